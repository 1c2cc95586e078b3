"""The ONNX graph toolkit and the two repairs built on it, on small graphs written with onnx.helper.

Each graph holds the pattern inside an If branch, so the tests prove that the repairs reach subgraphs;
onnxruntime runs the graph before and after, and the outputs are compared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from ondevice.converters import _onnx_graph as og  # noqa: E402
from ondevice.converters._onnx2tf_repair import repair_for_onnx2tf  # noqa: E402
from ondevice.converters._tf2onnx import repair_onnx  # noqa: E402

X_SHAPE = [1, 4, 2, 2]  # C == H*W: the square patch flatten onnx2tf converted wrong


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _branch(name: str, nodes: list, out: str, shape) -> onnx.GraphProto:
    return helper.make_graph(nodes, name, [], [_value(out, shape)])


def _if_model(then_branch, else_branch, shape, extra_nodes=(), extra_outputs=()):
    """x, cond -> If(cond) -> y, with both branches reading the outer x."""
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    node = helper.make_node("If", ["cond"], ["y"], name="/if", then_branch=then_branch, else_branch=else_branch)
    graph = helper.make_graph(
        [*extra_nodes, node], "main", [_value("x", X_SHAPE), cond], [_value("y", shape), *extra_outputs]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _patch_flatten(prefix: str, out: str) -> list:
    """Reshape(N, C, H*W) -> Transpose(0, 2, 1), with the target shape a Constant inside the branch."""
    shape = helper.make_tensor(f"{prefix}_shape_value", TensorProto.INT64, [3], [1, 4, 4])
    return [
        helper.make_node("Constant", [], [f"{prefix}_shape"], name=f"/{prefix}/Constant", value=shape),
        helper.make_node("Reshape", ["x", f"{prefix}_shape"], [f"{prefix}_flat"], name=f"/{prefix}/Reshape"),
        helper.make_node("Transpose", [f"{prefix}_flat"], [out], name=f"/{prefix}/Transpose", perm=[0, 2, 1]),
    ]


def _run(model, feeds: dict) -> list:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _feeds(cond: bool) -> dict:
    x = np.random.default_rng(0).standard_normal(X_SHAPE).astype(np.float32)
    return {"x": x, "cond": np.array(cond)}


def test_walk_yields_every_subgraph_before_its_parent():
    then_branch = _branch("then", _patch_flatten("a", "then_out"), "then_out", [1, 4, 4])
    else_branch = _branch("else", _patch_flatten("b", "else_out"), "else_out", [1, 4, 4])
    model = _if_model(then_branch, else_branch, [1, 4, 4])
    names = [g.name for g in og.walk(model.graph)]
    assert sorted(names[:2]) == ["else", "then"] and names[2:] == ["main"]
    assert sum(1 for _ in og.all_nodes(model.graph)) == 7  # If + 3 per branch
    assert og.unordered(model.graph) == []  # branches read the outer x: in scope


def test_unordered_names_a_tensor_read_before_it_is_written():
    nodes = [
        helper.make_node("Relu", ["h"], ["y"], name="second"),
        helper.make_node("Neg", ["x"], ["h"], name="first"),
    ]
    graph = helper.make_graph(nodes, "g", [_value("x", [2])], [_value("y", [2])])
    assert og.unordered(graph) == ["h"]


def test_patch_flatten_rewritten_inside_both_branches_with_identical_outputs(tmp_path):
    then_branch = _branch("then", _patch_flatten("a", "then_out"), "then_out", [1, 4, 4])
    else_branch = _branch("else", _patch_flatten("b", "else_out"), "else_out", [1, 4, 4])
    model = _if_model(then_branch, else_branch, [1, 4, 4])
    before = [_run(model, _feeds(c))[0] for c in (True, False)]
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))

    done = repair_for_onnx2tf(path)

    repaired = onnx.load(str(path))
    assert sum("flatten of channels-first patches" in line for line in done) == 2, done
    assert "3 node names lost their leading '/'" in done  # the If and each branch's Constant (others replaced)
    branches = [g for g in og.walk(repaired.graph) if g.name != "main"]
    assert [[n.op_type for n in g.node] for g in branches] == [["Constant", "Transpose", "Reshape"]] * 2
    assert [list(a.ints) for g in branches for n in g.node if n.op_type == "Transpose" for a in n.attribute] == [
        [0, 2, 3, 1]
    ] * 2
    assert not any(n.name.startswith("/") for n in og.all_nodes(repaired.graph))
    assert og.unordered(repaired.graph) == []
    onnx.checker.check_model(repaired)
    after = [_run(repaired, _feeds(c))[0] for c in (True, False)]
    for old, new in zip(before, after, strict=True):
        assert np.array_equal(old, new)


def test_a_reshape_also_read_by_a_subgraph_is_left_alone(tmp_path):
    """Rewriting it would remove a tensor the branch reads: the If counts as a second consumer."""
    nodes = _patch_flatten("a", "t")
    then_branch = _branch("then", [helper.make_node("Neg", ["a_flat"], ["then_out"])], "then_out", [1, 4, 4])
    else_branch = _branch("else", [helper.make_node("Identity", ["a_flat"], ["else_out"])], "else_out", [1, 4, 4])
    model = _if_model(then_branch, else_branch, [1, 4, 4], extra_nodes=nodes, extra_outputs=[_value("t", [1, 4, 4])])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    done = repair_for_onnx2tf(path)
    assert not any("flatten" in line for line in done), done
    assert "Reshape" in [n.op_type for n in onnx.load(str(path)).graph.node]


def test_erfc_repaired_inside_a_branch_runs_in_onnxruntime():
    then_branch = _branch("then", [helper.make_node("Erfc", ["x"], ["then_out"])], "then_out", X_SHAPE)
    else_branch = _branch("else", [helper.make_node("Neg", ["x"], ["else_out"])], "else_out", X_SHAPE)
    model = _if_model(then_branch, else_branch, X_SHAPE)

    model, repairs = repair_onnx(model)

    assert repairs == ["Erfc -> Sub(1, Erf(x)) x1"]
    assert "Erfc" not in [n.op_type for n in og.all_nodes(model.graph)]
    onnx.checker.check_model(model)
    feeds = _feeds(True)
    expected = np.vectorize(math.erfc)(feeds["x"].astype(np.float64))
    assert np.max(np.abs(_run(model, feeds)[0] - expected)) < 1e-6
    assert np.array_equal(_run(model, _feeds(False))[0], -feeds["x"])


def test_rename_reaches_the_names_a_branch_reads():
    then_branch = _branch("then", [helper.make_node("Neg", ["x"], ["then_out"])], "then_out", X_SHAPE)
    else_branch = _branch("else", [helper.make_node("Abs", ["x"], ["else_out"])], "else_out", X_SHAPE)
    model = _if_model(then_branch, else_branch, X_SHAPE)
    og.rename_tensors(model.graph, {"x": "image", "y": "logits"})
    assert og.io_names(model.graph) == (["image", "cond"], ["logits"])
    feeds = _feeds(True)
    onnx.checker.check_model(model)
    assert np.array_equal(_run(model, {"image": feeds["x"], "cond": feeds["cond"]})[0], -feeds["x"])
