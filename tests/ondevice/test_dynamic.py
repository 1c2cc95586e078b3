"""--dynamic: axes kept where the target can, validated at a second shape, fixed ones reported."""

from __future__ import annotations

import json

import pytest

import ondevice
from tests.models import cnn


@pytest.fixture(scope="module")
def dynamic_batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic")
    model, example = cnn()
    return ondevice.check(model, example, out_dir=out, dynamic={"input": [0]}, samples=3, runs=3), out


def test_batch_axis_kept_and_validated_at_a_second_shape(dynamic_batch):
    report, out = dynamic_batch
    assert report.exit_code == 0, report.verdict()
    targets = {t.target: t for t in report.targets}
    manifest = {a["target"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    for name in ("onnx", "openvino"):
        assert manifest[name]["options"]["dynamic_kept"] == {"input": [0]}
        (shape,) = targets[name].shapes
        assert shape["inputs"] == {"input": [3, 3, 64, 64]} and shape["checked"] is True
        assert shape["parity"]["samples"] == 3 and shape["parity"]["passed"] is True
        assert shape["parity"]["outputs"][0]["max_abs_err"] < 1e-5


def test_tflite_fixes_the_axis_and_says_so(dynamic_batch):
    report, out = dynamic_batch
    tflite = next(t for t in report.targets if t.target == "tflite")
    manifest = next(a for a in json.loads((out / "manifest.json").read_text())["artifacts"] if a["target"] == "tflite")
    assert manifest["options"]["dynamic_kept"] == {}
    assert any("axis 0 fixed to 1" in note for note in manifest["notes"])
    assert tflite.shapes[0]["checked"] is False and "fixed these axes" in tflite.shapes[0]["reason"]


def test_a_wrong_dynamic_result_fails(dynamic_batch, tmp_path):
    """A source that behaves differently at batch 3 than the artifact: caught at the second shape."""
    import torch

    _, out = dynamic_batch
    model, example = cnn()

    class BatchSensitive(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input):
            y = self.inner(input)
            return y + (y.shape[0] > 1) * 0.5  # the exported graph saw batch 1 only

    report = ondevice.validate(BatchSensitive().eval(), out, samples=3, example_inputs=example, runs=3)
    onnx = next(t for t in report.targets if t.target == "onnx")
    assert onnx.status == "failed" and "parity at shape {'input': [3, 3, 64, 64]}" in onnx.error
    assert report.exit_code == 1


def test_a_source_that_refuses_the_second_shape_leaves_the_check_recorded_as_not_run(dynamic_batch):
    """Fail closed: the artifact kept the batch axis, but the source runs at batch 1 only, so there is
    nothing to compare the second shape against; the report says so instead of leaving the check out."""
    import torch

    _, out = dynamic_batch
    model, example = cnn()

    class BatchOfOne(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input):
            if input.shape[0] != 1:
                raise ValueError(f"batch {input.shape[0]}: one image only")
            return self.inner(input)

    report = ondevice.validate(BatchOfOne().eval(), out, samples=3, example_inputs=example, runs=3)
    targets = {t.target: t for t in report.targets}
    for name in ("onnx", "openvino"):
        (shape,) = targets[name].shapes
        assert shape == {
            "inputs": {"input": [3, 3, 64, 64]},
            "checked": False,
            "reason": "the source model runs only at its example shape: ValueError: batch 3: one image only",
        }
        assert targets[name].status == "passed"  # the example shape still passed; the gap is on record
    assert "fixed these axes" in targets["tflite"].shapes[0]["reason"]
