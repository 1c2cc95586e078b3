"""Every route on tiny models, through the real converters and runtimes; the error figures are asserted."""

from __future__ import annotations

import json

import pytest

from ondevice.converters.registry import strategies_for

ROUTES = [
    # (fixture, framework, target, max abs error bound)
    ("torch_cnn_check", "torch", "onnx", 1e-5),
    ("torch_cnn_check", "torch", "openvino", 1e-5),
    ("torch_cnn_check", "torch", "tflite", 1e-5),
    ("torch_lstm_check", "torch", "onnx", 1e-5),
    ("torch_lstm_check", "torch", "openvino", 1e-5),
    ("torch_lstm_check", "torch", "tflite", 1e-5),
    ("torch_two_outputs_check", "torch", "onnx", 1e-5),
    ("torch_two_outputs_check", "torch", "openvino", 1e-5),
    ("torch_two_outputs_check", "torch", "tflite", 1e-5),
    ("keras_cnn_check", "keras", "onnx", 1e-5),
    ("keras_cnn_check", "keras", "openvino", 1e-5),
    ("keras_cnn_check", "keras", "tflite", 1e-5),
    ("onnx_cnn_check", "onnx", "onnx", 1e-6),
    ("onnx_cnn_check", "onnx", "openvino", 1e-5),
    ("onnx_cnn_check", "onnx", "tflite", 1e-5),
]


def _target(report, name):
    return next(t for t in report.targets if t.target == name)


@pytest.mark.parametrize(
    "fixture,framework,target,bound", ROUTES, ids=[f"{f.split('_check')[0]}-{t}" for f, _, t, _ in ROUTES]
)
def test_route_passes_parity(request, fixture, framework, target, bound):
    report, _out = request.getfixturevalue(fixture)
    result = _target(report, target)
    assert result.status == "passed", result.error
    assert result.strategy in {s.name for s in strategies_for(framework, target)}
    assert result.parity["samples"] == 8
    assert result.parity["outputs"], "no outputs were compared"
    for output in result.parity["outputs"]:
        assert output["max_abs_err"] < bound, output
        assert output["cosine"] > 0.999999
        assert output["snr_db"] > 60
        assert output["passed"] is True
    assert result.latency["runs"] == 20 and result.latency["p50_ms"] > 0
    assert result.source_latency["p50_ms"] > 0
    assert result.size_bytes > 1000


@pytest.mark.parametrize("fixture", ["torch_cnn_check", "keras_cnn_check", "onnx_cnn_check"])
def test_manifest_records_every_artifact(request, fixture):
    _report, out = request.getfixturevalue(fixture)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["failures"] == []
    assert {a["target"] for a in manifest["artifacts"]} == {"onnx", "tflite", "openvino"}
    for entry in manifest["artifacts"]:
        assert (out / entry["path"]).exists()
        assert len(entry["sha256"]) == 64 and entry["size_bytes"] > 0
        accepted = entry["attempts"][-1]
        assert {k: accepted[k] for k in ("strategy", "status", "reason")} == {
            "strategy": entry["strategy"],
            "status": "accepted",
            "reason": None,
        }
        assert 0 < accepted["seconds"] < 600  # conversion, load and probe of this strategy
        assert entry["converter_versions"], entry["target"]
        assert entry["inputs"] and all(i["artifact_name"] and i["dtype"] for i in entry["inputs"])
        assert entry["probe"]["passed"] is True and entry["probe"]["max_abs_err"] < 1e-4


def test_openvino_ir_keeps_fp32_weights(torch_cnn_check):
    """save_model compresses to fp16 unless told not to; an fp32 export must not change precision."""
    _, out = torch_cnn_check
    xml = (out / "model.xml").read_text()
    assert 'element_type="f32"' in xml
    assert 'element_type="f16"' not in xml


def test_onnx2tf_layout_is_recorded(onnx_cnn_check):
    """ONNX -> TFLite goes through onnx2tf, which makes NCHW inputs NHWC: the manifest says so."""
    _, out = onnx_cnn_check
    manifest = json.loads((out / "manifest.json").read_text())
    tflite = next(a for a in manifest["artifacts"] if a["target"] == "tflite")
    assert tflite["inputs"][0]["layout"] == "NCHW->NHWC"
    assert tflite["inputs"][0]["perm"] == [0, 2, 3, 1]


def test_two_outputs_matched_by_name(torch_two_outputs_check):
    report, out = torch_two_outputs_check
    onnx = _target(report, "onnx")
    assert [o["name"] for o in onnx.parity["outputs"]] == ["output_0", "output_1"]
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["target"] == "onnx")
    assert [i["artifact_name"] for i in entry["inputs"]] == ["image", "features"]
