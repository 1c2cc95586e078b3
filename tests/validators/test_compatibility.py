"""validators/compatibility.py: which ops each accelerator backend takes, on real exported artifacts
(the session's CNN, a Conv3d clip model, a Transformer) and on hand-built TFLite flatbuffers for the
GPU delegate's rules. Figures are those of the pinned stack (onnxruntime 1.32.0, torch 2.13, OpenVINO 2026.4).
"""

from __future__ import annotations

import json
import math
import os

import pytest

import ondevice
from ondevice.validators import compatibility
from ondevice.validators.compatibility import analyzer_rejections, captured_stdout, check_artifact
from tests import models


def entries(report_path, target):
    data = json.loads(report_path.read_text())
    return next(t for t in data["targets"] if t["target"] == target and t["quantize"] is None)["compatibility"]


# ---- TFLite and the GPU delegate, on real artifacts ------------------------------------------------


def test_cnn_tflite_runs_whole_on_the_gpu_delegate(torch_cnn_check):
    _, out = torch_cnn_check
    gpu = entries(out / "report.json", "tflite")["gpu"]
    assert gpu["checked"] is True and gpu["supported"] is True
    # litert-torch: TRANSPOSE, CONV_2D x3, DEPTHWISE_CONV_2D, MAX_POOL_2D, MEAN, FULLY_CONNECTED
    assert (gpu["ops_total"], gpu["ops_supported"], gpu["partitions"], gpu["unsupported"]) == (8, 8, 1, [])
    assert gpu["coverage"] == 1.0 and gpu["problems"] == []


def test_conv3d_is_refused_by_the_gpu_delegate_and_named_in_the_reports(torch_video_check):
    report, out = torch_video_check
    assert report.passed, report.verdict()  # parity holds on the CPU: only the accelerator refuses it
    gpu = entries(out / "report.json", "tflite")["gpu"]
    assert gpu["checked"] is True and gpu["supported"] is False
    assert gpu["unsupported"] == ["CONV_3D"]
    # TRANSPOSE -> CONV_3D -> ADD, MEAN, FULLY_CONNECTED...: the delegate would take two pieces around it
    assert (gpu["ops_total"], gpu["ops_supported"], gpu["partitions"]) == (6, 5, 2)
    assert gpu["problems"] == ["CONV_3D (op 1): the GPU delegate has no kernel for this op"]
    markdown = (out / "report.md").read_text()
    assert "### Accelerator compatibility" in markdown
    assert "| tflite | gpu | no | 5 of 6 | 83% | 2 | CONV_3D |" in markdown
    assert "CONV_3D" in (out / "report.html").read_text().split('id="compatibility"')[1]


def test_the_analyzer_is_asked_and_an_inert_one_is_not_believed(torch_video_check):
    _, out = torch_video_check
    analyzer = entries(out / "report.json", "tflite")["gpu"]["analyzer"]
    assert analyzer["ran"] is True and isinstance(analyzer["effective"], bool)
    if not analyzer["effective"]:
        # ai-edge-litert 2.3.0 and TF 2.21 both call a custom op no delegate implements "compatible".
        assert "not used" in analyzer["note"] and analyzer["warnings"] == 0
    else:
        assert analyzer["warnings"] >= 1


def test_analyzer_warnings_are_attributed_to_their_ops():
    text = (
        "Subgraph#0 main(T#0) -> [T#3]\n  Op#0 CONV_2D(T#0, T#1, T#2) -> [T#4]\n"
        "  Op#1 TOPK_V2(T#4, T#5) -> [T#3, T#6]\nGPU COMPATIBILITY WARNING: Not supported op TOPK_V2\n\n"
        "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1\n"
        "Subgraph#1 body(T#0) -> [T#1]\n  Op#0 FlexErf(T#0) -> [T#1]\n"
        "GPU COMPATIBILITY WARNING: Not supported custom op FlexErf\n"
    )
    assert analyzer_rejections(text) == {1: "Not supported op TOPK_V2", 2: "Not supported custom op FlexErf"}


def test_tensorflow_analyzer_output_is_captured_never_printed(capfd):
    pytest.importorskip("tensorflow")
    text = compatibility.analyze_with_tensorflow(compatibility._canary_model(), is_path=False)
    assert "OndeviceCanary" in text and "Subgraph#0" in text
    printed = capfd.readouterr()
    assert "OndeviceCanary" not in printed.out and "Subgraph#0" not in printed.out


def test_stdout_capture_takes_native_and_python_writes(capfd):
    with captured_stdout() as out:
        os.write(1, b"from native code\n")
        print("from python")
    assert "from native code" in out[0] and "from python" in out[0]
    assert capfd.readouterr().out == ""


# ---- the GPU rules on hand-built flatbuffers ------------------------------------------------------


def flatbuffer(op_name, inputs, outputs=(((1, 8), "FLOAT32"),), options=None, chain=False):
    """A TFLite model with one op (``chain``: RELU -> op -> RELU); inputs are (shape, dtype, const)."""
    import flatbuffers

    s = compatibility._tflite_schema()
    buffers, tensors = [s.BufferT()], []

    def tensor(shape, dtype, const=False):
        t = s.TensorT()
        t.shape, t.type, t.name = list(shape), getattr(s.TensorType, dtype), f"t{len(tensors)}"
        t.buffer = 0
        if const:
            buffer = s.BufferT()
            buffer.data = [1, 0, 0, 0] * max(1, math.prod(shape))
            buffers.append(buffer)
            t.buffer = len(buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    def code(name):
        c = s.OperatorCodeT()
        builtin = getattr(s.BuiltinOperator, name, None)
        c.builtinCode = c.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM if builtin is None else builtin
        if builtin is None:
            c.customCode = name
        return c

    def operator(index, ins, outs, opts=None):
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = index, ins, outs
        if opts is not None:
            op.builtinOptionsType, op.builtinOptions = opts
        return op

    ins = [tensor(*spec) for spec in inputs]
    outs = [tensor(*spec) for spec in outputs]
    graph = s.SubGraphT()
    graph.operators = [operator(0, ins, outs, options)]
    codes = [code(op_name)]
    if chain:
        codes.append(code("RELU"))
        first, last = tensor(*inputs[0][:2]), tensor(*outputs[0])
        graph.operators = [operator(1, [first], [ins[0]]), *graph.operators, operator(1, [outs[0]], [last])]
        graph.inputs, graph.outputs = [first], [last]
    else:
        graph.inputs, graph.outputs = [i for i in ins if not tensors[i].buffer], outs
    graph.tensors = tensors
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [graph], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def gpu_verdict(tmp_path, *args, **kwargs):
    path = tmp_path / "m.tflite"
    path.write_bytes(flatbuffer(*args, **kwargs))
    return check_artifact(path, "tflite")["gpu"]


def options(kind, **fields):
    s = compatibility._tflite_schema()
    table = getattr(s, f"{kind}T")()
    for key, value in fields.items():
        setattr(table, key, value)
    return getattr(s.BuiltinOptions, kind), table


X = ((1, 8), "FLOAT32")


@pytest.mark.parametrize(
    "op, inputs, outputs, opts, why",
    [
        ("TOPK_V2", [X, ((), "INT32", True)], [X, ((1, 8), "INT32")], None, "no kernel for this op"),
        ("FlexErf", [X], [X], None, "TensorFlow op (Flex delegate)"),
        ("MyCustomOp", [X], [X], None, "custom op the GPU delegate does not implement"),
        ("SOFTMAX", [X], [X], options("SoftmaxOptions", beta=2.0), "beta 2"),
        (
            "STRIDED_SLICE",
            [((1, 2, 8), "FLOAT32"), ((3,), "INT32", True), ((3,), "INT32", True), ((3,), "INT32", True)],
            [X],
            options("StridedSliceOptions", shrinkAxisMask=2),
            "shrink-axis",
        ),
        ("CAST", [((1, 8), "INT64")], [X], None, "no GPU cast from INT64 to FLOAT32"),
        ("RESHAPE", [X, ((2,), "INT32")], [X], None, "one runtime input (this node has 2)"),
        ("SUB", [((1, 8), "FLOAT32", True), ((1, 8), "FLOAT32", True)], [X], None, "two runtime inputs, or one and a"),
        ("MEAN", [X, ((1,), "INT32")], [((1,), "FLOAT32")], None, "one runtime input"),
        ("SLICE", [((1, 2, 3, 4, 8), "FLOAT32"), ((5,), "INT32", True), ((5,), "INT32", True)], [X], None, "5-D"),
    ],
)
def test_gpu_rules_refuse(tmp_path, op, inputs, outputs, opts, why):
    gpu = gpu_verdict(tmp_path, op, inputs, outputs, opts)
    assert gpu.checked and not gpu.supported and gpu.unsupported == (op,)
    assert why in gpu.details["problems"][0], gpu.details["problems"]


@pytest.mark.parametrize(
    "op, inputs, outputs, opts",
    [
        ("SOFTMAX", [X], [X], options("SoftmaxOptions", beta=1.0)),
        ("CAST", [X], [((1, 8), "INT32")], None),
        ("RESHAPE", [X, ((2,), "INT32", True)], [X], None),
        ("SUB", [X, ((1, 8), "FLOAT32", True)], [X], None),
        ("MEAN", [((1, 4, 8), "FLOAT32"), ((1,), "INT32", True)], [X], None),
        ("Resampler", [X, X], [X], None),
    ],
)
def test_gpu_rules_accept(tmp_path, op, inputs, outputs, opts):
    gpu = gpu_verdict(tmp_path, op, inputs, outputs, opts)
    assert bool(gpu) and gpu.ops_total == gpu.ops_supported == 1 and gpu.partitions == 1


def test_a_refused_op_mid_graph_splits_it_in_two(tmp_path):
    gpu = gpu_verdict(tmp_path, "TOPK_V2", [X, ((), "INT32", True)], [X, ((1, 8), "INT32")], chain=True)
    assert (gpu.ops_total, gpu.ops_supported, gpu.partitions, gpu.unsupported) == (3, 2, 2, ("TOPK_V2",))
    assert gpu.coverage == pytest.approx(2 / 3)


def test_the_canary_is_a_model_the_rules_refuse(tmp_path):
    path = tmp_path / "canary.tflite"
    path.write_bytes(compatibility._canary_model())
    gpu = check_artifact(path, "tflite")["gpu"]
    assert gpu.unsupported == ("OndeviceCanary",) and gpu.ops_total == 1


# ---- ONNX: NNAPI and CoreML partitions ------------------------------------------------------------


def ort_figures(found):
    return {b: (e.ops_total, e.ops_supported, e.partitions, e.unsupported) for b, e in found.items()}


def test_onnx_partitions_of_the_cnn(torch_cnn_check):
    _, out = torch_cnn_check
    found = check_artifact(out / "model.onnx", "onnx")
    # Conv, Relu, MaxPool, ReduceMean, Gemm... (11 nodes after basic optimization)
    assert ort_figures(found) == {
        "nnapi": (11, 11, 1, ()),
        "coreml": (11, 11, 1, ()),
        "coreml-nn": (11, 10, 2, ("ReduceMean",)),
    }
    assert found["nnapi"].details["suitability"] == "YES" and found["coreml-nn"].details["suitability"] == "MAYBE"
    assert any(c.startswith("ai.onnx:Conv:Only 2D Conv") for c in found["nnapi"].details["caveats"])


@pytest.fixture(scope="module")
def transformer_onnx(tmp_path_factory):
    model, example = models.transformer()
    out = tmp_path_factory.mktemp("transformer_onnx")
    return next(iter(ondevice.export(model, example, targets=("onnx",), out_dir=out))).path


def test_onnx_partitions_of_the_transformer(transformer_onnx):
    found = check_artifact(transformer_onnx, "onnx")
    assert ort_figures(found) == {
        "nnapi": (43, 41, 3, ("LayerNormalization",)),
        "coreml": (43, 40, 2, ("Gather",)),
        "coreml-nn": (43, 39, 4, ("LayerNormalization", "ReduceMean", "Unsqueeze")),
    }
    assert {b: e.details["suitability"] for b, e in found.items()} == {
        "nnapi": "NO",
        "coreml": "MAYBE",
        "coreml-nn": "NO",
    }
    assert found["nnapi"].details["nodes_unsupported"] == {"op": 2, "dynamic_shape": 0, "rank": 0}


# ---- OpenVINO: per device plugin ------------------------------------------------------------------


def test_openvino_cpu_takes_every_op_and_absent_plugins_are_not_passed(torch_cnn_check):
    import openvino as ov

    _, out = torch_cnn_check
    found = check_artifact(out / "model.xml", "openvino")
    model = ov.Core().read_model(str(out / "model.xml"))
    compute = [op for op in model.get_ops() if op.get_type_name() not in ("Parameter", "Constant", "Result")]
    cpu = found["cpu"]
    assert cpu.checked and cpu.supported and cpu.partitions == 1
    assert cpu.ops_total == cpu.ops_supported == len(compute) == 18
    available = ov.Core().available_devices
    for backend in ("gpu", "npu"):
        entry = found[backend]
        if any(d.startswith(backend.upper()) for d in available):
            assert entry.checked
        else:
            assert not entry.checked and not entry and entry.reason.startswith("plugin absent: OpenVINO lists no")
            assert entry.to_json()["supported"] is False


# ---- the registry and failures --------------------------------------------------------------------


def test_a_checker_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        compatibility.checker("tflite", ("gpu",))(lambda path: {})


def test_a_target_without_a_checker_has_no_entries(tmp_path):
    assert check_artifact(tmp_path / "x.bin", "no-such-target") == {}


def test_an_unreadable_artifact_is_recorded_not_checked_with_the_reason(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<net><layers>")
    found = check_artifact(path, "openvino")
    assert set(found) == {"cpu", "gpu", "npu"}
    assert all(not e.checked and e.reason.startswith("the check failed: ") for e in found.values())


def test_a_tflite_file_without_a_subgraph_is_not_checked_rather_than_supported(tmp_path):
    path = tmp_path / "zeros.tflite"
    path.write_bytes(b"\0" * 1000)  # parses as a flatbuffer with no subgraph and no op
    (gpu,) = check_artifact(path, "tflite").values()
    assert not gpu.checked and not gpu.supported
    assert gpu.reason == "the check failed: ValueError: the file holds no subgraph: not a TFLite model"


def test_the_isolated_run_returns_json_for_each_artifact(torch_cnn_check):
    from ondevice._compat import check_isolated

    _, out = torch_cnn_check
    tflite, missing = check_isolated([(out / "model.tflite", "tflite"), (out / "gone.onnx", "onnx")])
    assert tflite["gpu"]["supported"] is True
    assert set(missing) == {"nnapi", "coreml", "coreml-nn"}
    assert all(e["checked"] is False and "gone.onnx" in e["reason"] for e in missing.values())


def test_a_file_checked_before_is_not_checked_again_unless_it_changed(torch_cnn_check, tmp_path):
    """check_source checks the finished artifacts while TFLite converts, and validation reuses the entries.
    Shown without a mock: a file overwritten in place with garbage of the same size, its mtime put back,
    still reads as checked (the cached entries), and reads as broken once its mtime moves."""
    import os
    import shutil

    from ondevice._compat import check_isolated

    _, out = torch_cnn_check
    path = tmp_path / "model.tflite"
    shutil.copy(out / "model.tflite", path)
    (first,) = check_isolated([(path, "tflite")])
    assert first["gpu"]["checked"] is True
    stat = os.stat(path)
    path.write_bytes(b"garbage!" * (stat.st_size // 8) + b"!" * (stat.st_size % 8))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert check_isolated([(path, "tflite")]) == [first]
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    (changed,) = check_isolated([(path, "tflite")])
    assert changed["gpu"]["checked"] is False and changed["gpu"]["reason"]


# ---- --require: the strategy loop keeps the first artifact the backends take whole ------------------


def test_require_skips_a_strategy_whose_artifact_the_backend_refuses(tmp_path):
    model, example = models.gelu_mlp()
    artifacts = ondevice.export(model, example, targets=("onnx",), out_dir=tmp_path, require=["onnx:nnapi"])
    onnx = next(iter(artifacts))
    assert onnx.strategy == "torch-onnx-torchscript" and onnx.options["require"] == {"nnapi": True}
    first = onnx.attempts[0]
    assert first["strategy"] == "torch-onnx-dynamo" and first["status"] == "rejected"
    assert first["reason"] == "required backend: nnapi: 1 of 2 ops; unsupported: Gelu"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["artifacts"][0]["options"]["require"] == {"nnapi": True}


def test_require_that_no_strategy_meets_keeps_the_artifact_and_fails(tmp_path, capsys):
    from ondevice.cli import main

    model_file = os.path.join(os.path.dirname(models.__file__), "models.py")
    code = main(
        [
            "export",
            f"{model_file}:video",
            "--to",
            "tflite",
            "--strategy",
            "torch-tflite-litert",
            "--require",
            "tflite:gpu",
            "-o",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 1
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["artifacts"][0]
    assert entry["options"]["require"] == {"gpu": False}
    assert [(a["strategy"], a["status"], a["reason"]) for a in entry["attempts"]] == [
        ("torch-tflite-litert", "rejected", "required backend: gpu: 5 of 6 ops, 2 partitions; unsupported: CONV_3D")
    ]
    # The requirement travels with the artifact: validating the folder fails the target too.
    capsys.readouterr()
    code = main(["validate", f"{model_file}:video", str(tmp_path), "--runs", "5", "--quiet"])
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 1 and "tflite: failed: required backend: gpu: 5 of 6 ops" in verdict and "CONV_3D" in verdict


@pytest.mark.parametrize(
    "spec, message",
    [
        ("tflite:npu", "unknown tflite backend 'npu'; choose from gpu"),
        ("coreml:gpu", "unknown target 'coreml'"),
        ("tflite", "name a backend"),
        ("openvino:gpu", "openvino is not among the targets made (tflite)"),
    ],
)
def test_a_bad_require_is_refused_before_anything_runs(tmp_path, capsys, spec, message):
    from ondevice.cli import main

    code = main(["export", "no_such_file.py:f", "--to", "tflite", "--require", spec, "-o", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and message in out.strip().splitlines()[-1]
