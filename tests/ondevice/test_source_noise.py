"""fp32 parity against a source that amplifies rounding: the export is judged by the source's own noise
(validators.parity.source_noise), and a wrong export still fails. Real torch, onnxruntime, OpenVINO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ondevice.cli import main
from ondevice.validators.parity import NOISE_CAP, NOISE_FACTOR

MODELS = str(Path(__file__).resolve().parents[1] / "models.py")
FAST = ["--runs", "3", "--no-explain", "--no-emulate-cpu"]


def test_a_chaotic_source_is_judged_by_its_own_rounding_noise(tmp_path, capsys):
    # Seed 2's samples: the source's outputs move by ~4e-3 under one-ulp input changes, 40x plain atol.
    code = main(["check", f"{MODELS}:chaotic_mlp", "--to", "onnx,openvino", "-o", str(tmp_path), "--seed", "2", *FAST])
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0, capsys.readouterr().out
    for target in report["targets"]:
        out = target["parity"]["outputs"][0]
        noise = out["source_noise"]  # measured only because plain fp32 atol was missed
        assert target["status"] == "passed" and noise is not None and noise > 1e-4
        assert out["max_abs_err"] > 1e-4 + 1e-3 * out["peak"]  # plain atol and rtol could not have passed it
        assert out["atol"] == pytest.approx(min(NOISE_FACTOR * noise, NOISE_CAP * max(out["peak"], 1.0)))
        assert any("when its float inputs move by one ulp" in note for note in target["notes"])


def test_a_wrong_export_of_a_chaotic_source_still_fails(tmp_path, capsys):
    """One weight off by 1e-2 in the first layer: amplified like rounding, but far past the noise floor."""
    wrong = tmp_path / "wrong"
    assert main(["export", f"{MODELS}:chaotic_mlp_changed", "--to", "onnx", "-o", str(wrong)]) == 0
    capsys.readouterr()
    code = main(["validate", f"{MODELS}:chaotic_mlp", str(wrong), "--report", str(tmp_path / "r.json"), *FAST])
    report = json.loads((tmp_path / "r.json").read_text())
    out = report["targets"][0]["parity"]["outputs"][0]
    assert code == 1 and report["targets"][0]["status"] == "failed"
    assert out["source_noise"] is not None and out["max_abs_err"] > 10 * out["atol"]
    assert "when its inputs move by one ulp" in report["targets"][0]["error"]
