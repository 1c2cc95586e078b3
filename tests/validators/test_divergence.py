"""The first diverging layer: one known layer corrupted in each target's file, and explain must name it.

Artifacts come from the plain converters (tests/byo_models.py); the corruption scales one layer's
weights in the file itself, the way a converter bug or a bad re-save would change it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ondevice.cli import main
from ondevice.validators.divergence import Tensor, locate
from tests import byo_models, models

ROOT = Path(__file__).resolve().parents[2]
MODELS = str(ROOT / "tests" / "models.py")


def _scale_onnx_weight(path: Path, out: Path, op_type: str, index: int, factor: float = 3.0) -> str:
    """Multiply the weight (2nd input) of the ``index``-th ``op_type`` node by ``factor``; returns the node name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    node = [n for n in model.graph.node if n.op_type == op_type][index]
    weight = next(i for i in model.graph.initializer if i.name == node.input[1])
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * factor, weight.name))
    onnx.save(model, str(out))
    return node.name


def _scale_tflite_weight(path: Path, out: Path, op_name: str, index: int, factor: float = 3.0) -> None:
    """Multiply the filter (2nd input) of the ``index``-th ``op_name`` op of a .tflite by ``factor``."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    codes = {getattr(schema.BuiltinOperator, op_name)}
    graph = model.subgraphs[0]
    ops = [
        op
        for op in graph.operators
        if model.operatorCodes[op.opcodeIndex].builtinCode in codes
        or model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode in codes
    ]
    buffer = model.buffers[graph.tensors[ops[index].inputs[1]].buffer]
    values = np.frombuffer(bytes(buffer.data), dtype=np.float32) * factor
    buffer.data = np.frombuffer(values.astype(np.float32).tobytes(), dtype=np.uint8)
    flatbuffer_utils.write_model(model, str(out))


def _scale_openvino_matmul(path: Path, out: Path, name_part: str, factor: float = 3.0) -> str:
    """Multiply the constant weight of the MatMul whose name contains ``name_part``; save without fp16."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    op = next(
        o for o in model.get_ordered_ops() if o.get_type_name() == "MatMul" and name_part in o.get_friendly_name()
    )
    source = op.input_value(1).get_node()
    while source.get_type_name() != "Constant":  # a Convert or Transpose may sit between
        source = source.input_value(0).get_node()
    scaled = ov.opset13.constant(source.get_data() * factor)
    source.output(0).replace(scaled.output(0))
    ov.save_model(model, str(out), compress_to_fp16=False)
    return op.get_friendly_name()


def _explain(source, artifact, capsys, *extra):
    code = main(["explain", source, str(artifact), *extra])
    return code, capsys.readouterr().out.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def cnn_onnx(tmp_path_factory):
    """The bundled CNN by plain torch.onnx.export, and a copy with Conv /4 (module "4") weights x3."""
    out = tmp_path_factory.mktemp("explain_cnn")
    model, example = models.cnn()
    plain = byo_models.plain_torch_onnx(model, (example,), out / "cnn.onnx", dynamo=False)
    assert _scale_onnx_weight(plain, out / "cnn_bad.onnx", "Conv", 2) == "/4/Conv"
    return plain, out / "cnn_bad.onnx"


def test_onnx_cnn_names_the_corrupted_conv(cnn_onnx, capsys, tmp_path):
    plain, bad = cnn_onnx
    code, verdict = _explain(f"{MODELS}:cnn", plain, capsys)
    assert code == 0 and verdict.startswith("PASSED (no divergence found in cnn.onnx")
    code, verdict = _explain(f"{MODELS}:cnn", bad, capsys, "--json", str(tmp_path / "d.json"))
    assert code == 1 and verdict.startswith("FAILED (first divergence at 4 (Conv2d) -> /4/Conv_output_0 (Conv)")
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["first"]["source_layer"] == "4" and data["first"]["cosine"] < 0.99
    before = [layer for layer in data["layers"] if layer["depth"] < data["first"]["depth"]]
    assert before and all(not layer["diverged"] and layer["rel_err"] < 1e-4 for layer in before)
    assert data["counts"]["by_name"] >= 8 and data["counts"]["unpaired"] == 0


def test_validate_reports_the_divergence_of_a_failing_target(cnn_onnx, tmp_path, capsys):
    _, bad = cnn_onnx
    report_path = tmp_path / "report.json"
    code = main(["validate", f"{MODELS}:cnn", str(bad), "--report", str(report_path), "--samples", "2", "--runs", "2"])
    assert code == 1  # exit codes unchanged: parity failed
    target = json.loads(report_path.read_text())["targets"][0]
    first = target["divergence"]["first"]
    assert (first["source_layer"], first["artifact_tensor"], first["op_type"]) == ("4", "/4/Conv_output_0", "Conv")
    assert first["max_abs_err"] > 0.1 and target["divergence"]["unpaired"] == []
    assert "first divergence at 4 → /4/Conv_output_0 (Conv)" in (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert '<svg class="plot divergence"' in html and 'fill="#c62828"' in html
    code = main(
        [
            "validate",
            f"{MODELS}:cnn",
            str(bad),
            "--report",
            str(tmp_path / "n" / "report.json"),
            "--samples",
            "2",
            "--runs",
            "2",
            "--no-explain",
        ]
    )
    assert code == 1 and json.loads((tmp_path / "n" / "report.json").read_text())["targets"][0]["divergence"] is None


def test_onnx_lstm_names_the_corrupted_rnn(tmp_path, capsys):
    model, example = models.lstm()
    plain = byo_models.plain_torch_onnx(model, (example,), tmp_path / "lstm.onnx", dynamo=False)
    _scale_onnx_weight(plain, tmp_path / "lstm_bad.onnx", "LSTM", 0)
    code, verdict = _explain(f"{MODELS}:lstm", tmp_path / "lstm_bad.onnx", capsys)
    assert code == 1 and verdict.startswith("FAILED (first divergence at rnn (LSTM)"), verdict


def test_tflite_keras_cnn_names_the_corrupted_conv(tmp_path):
    from ondevice.api import _source
    from ondevice.explain import explain_artifact, pick_artifact

    # One model object for the file and the explanation: Keras numbers layer names per process.
    model, example = models.keras_cnn()
    plain = byo_models.plain_keras_tflite(model, tmp_path / "keras_cnn.tflite")
    _scale_tflite_weight(plain, tmp_path / "bad.tflite", "DEPTHWISE_CONV_2D", 0)
    source = _source(model, example)
    clean = explain_artifact(source, pick_artifact(source, plain), source.example_feeds())
    assert clean.first is None and clean.counts()["by_name"] + clean.counts()["by_value"] >= 5
    found = explain_artifact(source, pick_artifact(source, tmp_path / "bad.tflite"), source.example_feeds())
    depthwise = next(layer.name for layer in model.layers if type(layer).__name__ == "DepthwiseConv2D")
    assert found.first.source_layer == depthwise and found.first.op_type == "DEPTHWISE_CONV_2D"
    assert found.first.paired_by == "name" and found.first.max_abs_err > 0.1


def test_openvino_transformer_names_the_corrupted_linear(tmp_path, capsys):
    model, example = models.transformer()
    onnx_file = byo_models.plain_torch_onnx(model, (example,), tmp_path / "t.onnx", dynamo=False)
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_file)), str(tmp_path / "t.xml"), compress_to_fp16=False)
    code, verdict = _explain(f"{MODELS}:transformer", tmp_path / "t.xml", capsys)
    assert code == 0, verdict
    _scale_openvino_matmul(tmp_path / "t.xml", tmp_path / "bad.xml", "linear1")
    code, verdict = _explain(f"{MODELS}:transformer", tmp_path / "bad.xml", capsys)
    assert code == 1 and verdict.startswith("FAILED (first divergence at encoder.layers.0.linear1 (Linear)"), verdict


def test_locate_pairs_across_layouts_and_leaves_fused_layers_unpaired():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(1, 4, 5, 5)).astype(np.float32)
    relu = np.maximum(conv * 1.5 + 0.2, 0)  # a BatchNorm-like affine, then ReLU
    source = [
        Tensor("conv", "Conv2d", conv),
        Tensor("bn", "BatchNorm2d", conv * 1.5 + 0.2),
        Tensor("relu", "ReLU", relu),
        Tensor("head", "Linear", relu.mean(axis=(2, 3)) * 2),
    ]
    # the artifact fused conv+bn+relu into one NHWC tensor, and its head is off by 10 %
    artifact = [
        Tensor("fused", "CONV_2D", np.transpose(relu, (0, 2, 3, 1))),
        Tensor("out", "FULLY_CONNECTED", relu.mean(axis=(2, 3)) * 2.2),
    ]
    found = locate(source, artifact)
    assert [layer.source_layer for layer in found.layers] == ["relu", "head"]
    assert found.layers[0].paired_by == "value" and found.layers[0].rel_err < 1e-6
    assert {u["source_layer"] for u in found.unpaired} == {"conv", "bn"}
    assert found.first.source_layer == "head" and found.layers[0].fused_with == ("conv", "bn")
    quantized = locate(source, artifact, "int8")
    assert quantized.first is None and quantized.ranking[0]["source_layer"] == "head"
