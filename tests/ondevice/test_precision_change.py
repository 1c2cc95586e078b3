"""A silent precision change fails validation: an IR re-saved with OpenVINO's default fp16 weights."""

from __future__ import annotations

import shutil

import ondevice
from ondevice.artifacts import Artifacts
from tests.models import cnn


def test_fp16_weights_in_an_fp32_ir_fail_unless_allowed(torch_cnn_check, tmp_path):
    import openvino as ov

    _, out = torch_cnn_check
    copy = tmp_path / "resaved"
    shutil.copytree(out, copy)
    artifacts = Artifacts.load(copy)
    ir = artifacts.get("openvino")
    # What a pipeline step calling save_model() with its defaults does: weights become fp16.
    # (Saved aside first: read_model maps the .bin, so overwriting it in place crashes.)
    model = ov.Core().read_model(str(ir.path))
    aside = tmp_path / "aside"
    aside.mkdir()
    ov.save_model(model, str(aside / "model.xml"))
    del model
    for name in ("model.xml", "model.bin"):
        shutil.move(aside / name, copy / name)
    ir.seal()
    artifacts.write_manifest()

    model_, example = cnn()
    report = ondevice.validate(model_, copy, samples=3, example_inputs=example, runs=3)
    result = next(t for t in report.targets if t.target == "openvino")
    assert result.status == "failed" and report.exit_code == 1
    assert result.precision["requested"] == "fp32" and result.precision["found"] == "fp16"
    assert "changed silently" in result.error
    assert result.parity["passed"] is True, "the numbers alone would not have caught it"

    allowed = ondevice.validate(model_, copy, samples=3, example_inputs=example, runs=3, allow_precision_change=True)
    result = next(t for t in allowed.targets if t.target == "openvino")
    assert result.status == "passed" and any("precision change allowed" in n for n in result.notes)
