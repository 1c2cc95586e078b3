"""The gate's [compatibility] section: validated up front, judged on the report's compatibility entries.

The reports are the session's real ones (the CNN on three targets, the Conv3d clip model whose TFLite
CONV_3D the GPU delegate refuses), or copies of them with one thing changed.
"""

from __future__ import annotations

import json

import pytest

from ondevice.cli import main
from ondevice.gate import PolicyError, policy_from_dict, run_gate
from ondevice.report import load_report


@pytest.fixture
def video(torch_video_check):
    _, out = torch_video_check
    return out / "report.json"


@pytest.fixture
def cnn(torch_cnn_check):
    _, out = torch_cnn_check
    return out / "report.json"


def gate(capsys, tmp_path, report, policy_text):
    policy = tmp_path / "gate.toml"
    policy.write_text(policy_text)
    code = main(["gate", str(report), "--policy", str(policy), "--json", str(tmp_path / "gate.json")])
    out = capsys.readouterr().out
    return code, out, json.loads((tmp_path / "gate.json").read_text()) if (tmp_path / "gate.json").exists() else None


def derive(report, path, change):
    data = json.loads(report.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


# ---- the policy --------------------------------------------------------------------------------------


def test_backend_lists_and_coverage_forms_are_read():
    policy = policy_from_dict({"compatibility": {"tflite": ["gpu"], "onnx": ["nnapi", "coreml"]}})
    assert policy.compatibility == {"require": {"tflite": ("gpu",), "onnx": ("nnapi", "coreml")}, "min_coverage": {}}
    policy = policy_from_dict({"compatibility": {"tflite": ["gpu"], "onnx": ["nnapi"], "min_coverage": 0.9}})
    assert policy.compatibility["min_coverage"] == {("tflite", "gpu"): 0.9, ("onnx", "nnapi"): 0.9}
    policy = policy_from_dict(
        {
            "compatibility": {
                "tflite": ["gpu"],
                "onnx": ["nnapi", "coreml"],
                "min_coverage": {"onnx": {"coreml": 0.8}, "tflite": 0.5},
            }
        }
    )
    assert policy.compatibility["min_coverage"] == {("onnx", "coreml"): 0.8, ("tflite", "gpu"): 0.5}
    assert policy_from_dict({}).compatibility == {}


@pytest.mark.parametrize(
    "table, message",
    [
        ({"tflit": ["gpu"]}, "[compatibility]: unknown key 'tflit'; known keys: "),
        ({"tflite": ["npu"]}, "[compatibility] tflite: unknown value 'npu'; choose from gpu"),
        ({"tflite": "gpu"}, "[compatibility] tflite must be a list of strings"),
        ({"tflite": ["gpu"], "min_coverage": 1.5}, "min_coverage = 1.5 is outside [0.0, 1.0]"),
        ({"min_coverage": 0.9}, "min_coverage needs a backend list"),
        ({"tflite": ["gpu"], "min_coverage": {"onnx": 0.9}}, "min_coverage: unknown key 'onnx'; known keys: tflite"),
        ({"onnx": ["nnapi"], "min_coverage": {"onnx": {"coreml": 0.9}}}, "unknown key 'coreml'; known keys: nnapi"),
        ({"tflite": ["gpu"], "min_coverage": "all"}, "min_coverage must be a finite number"),
    ],
)
def test_a_bad_compatibility_section_is_refused(table, message):
    with pytest.raises(PolicyError) as error:
        policy_from_dict({"compatibility": table}, "gate.toml")
    assert message in str(error.value)


def test_a_bad_section_stops_the_gate_with_exit_2(capsys, tmp_path, video):
    code, out, _ = gate(capsys, tmp_path, video, '[compatibility]\ntflite = ["gpu"]\nmin_coverage = 2\n')
    assert code == 2 and out.strip().splitlines()[-1].startswith("FAILED (")
    assert "min_coverage = 2 is outside" in out


# ---- judging ----------------------------------------------------------------------------------------


def test_gpu_required_fails_on_conv3d_and_names_the_op(capsys, tmp_path, video):
    code, out, result = gate(capsys, tmp_path, video, '[compatibility]\ntflite = ["gpu"]\n')
    assert code == 1
    assert (
        "gate: FAIL compatibility.gpu tflite[fp32]: gpu: 5 of 6 ops, 2 partitions; unsupported: CONV_3D "
        "(coverage 0.83; required: every op)"
    ) in out
    assert "FAILED (" in out.strip().splitlines()[-1] and "compatibility.gpu tflite[fp32]" in out.splitlines()[-1]
    failure = result["failed"][0]
    assert (failure["rule"], failure["target"], failure["actual"], failure["limit"]) == (
        "compatibility.gpu",
        "tflite",
        0.8333,
        1.0,
    )


def test_min_coverage_is_a_share_of_ops(capsys, tmp_path, video):
    assert gate(capsys, tmp_path, video, '[compatibility]\ntflite = ["gpu"]\nmin_coverage = 0.8\n')[0] == 0
    code, out, _ = gate(capsys, tmp_path, video, '[compatibility]\ntflite = ["gpu"]\nmin_coverage = 0.9\n')
    assert code == 1 and "(coverage 0.83; required: coverage >= 0.9)" in out


def test_the_cnn_passes_every_checked_backend(capsys, tmp_path, cnn):
    policy = (
        '[compatibility]\ntflite = ["gpu"]\nonnx = ["nnapi", "coreml", "coreml-nn"]\nopenvino = ["cpu"]\n'
        "[compatibility.min_coverage.onnx]\ncoreml-nn = 0.9\n"
    )
    code, out, result = gate(capsys, tmp_path, cnn, policy)
    assert code == 0, out
    assert result["checks"] >= 3 + 5  # a status per target, then one rule per required backend


def test_a_backend_that_was_not_checked_fails_the_rule(capsys, tmp_path, cnn):
    gpu = next(t for t in load_report(cnn).targets if t.target == "openvino").compatibility["gpu"]
    code, out, _ = gate(capsys, tmp_path, cnn, '[compatibility]\nopenvino = ["gpu"]\n')
    if gpu["checked"]:
        pytest.skip("this machine has an OpenVINO GPU device")
    assert code == 1
    assert f"gate: FAIL compatibility.gpu openvino[fp32]: gpu: not checked ({gpu['reason']}): cannot be proven" in out


def test_a_report_without_compatibility_is_not_measured(capsys, tmp_path, video):
    old = derive(video, tmp_path / "old.json", lambda d: [t.pop("compatibility") for t in d["targets"]])
    code, out, _ = gate(capsys, tmp_path, old, '[compatibility]\ntflite = ["gpu"]\n')
    assert code == 1 and "compatibility tflite[fp32]: not measured: the report has no compatibility results" in out


def test_a_required_target_missing_from_the_report_fails(capsys, tmp_path, video):
    code, out, result = gate(capsys, tmp_path, video, '[compatibility]\nonnx = ["nnapi"]\n')
    assert code == 1
    assert "[compatibility] requires onnx on nnapi, and the report has no onnx artifact" in out
    assert result["failed"][0]["target"] is None


def test_the_failure_lands_in_the_junit_export_case(tmp_path, video):
    from ondevice.gate import load_policy
    from ondevice.render import to_junit

    (tmp_path / "gate.toml").write_text('[compatibility]\ntflite = ["gpu"]\n')
    report = load_report(video)
    xml = to_junit(report, run_gate(report, load_policy(tmp_path / "gate.toml")))
    export_case = xml.split('name="export"')[1].split("</testcase>")[0]
    assert "<failure" in export_case and "CONV_3D" in export_case


# ---- hostile reports ----------------------------------------------------------------------------------


def test_a_malformed_compatibility_entry_is_refused(capsys, tmp_path, video):
    def change(data):
        data["targets"][0]["compatibility"]["gpu"]["unsupported"] = "CONV_3D"

    bad = derive(video, tmp_path / "bad.json", change)
    code, out, _ = gate(capsys, tmp_path, bad, '[compatibility]\ntflite = ["gpu"]\n')
    assert code == 2 and "compatibility 'gpu': unsupported must be a list of op names" in out


def test_op_names_are_escaped_in_every_rendering(capsys, tmp_path, video):
    def change(data):
        data["targets"][0]["compatibility"]["gpu"]["unsupported"] = ["<img src=x onerror=alert(1)>|`x`"]

    hostile = derive(video, tmp_path / "hostile.json", change)
    for fmt in ("md", "html"):
        assert main(["report", str(hostile), "--format", fmt, "-o", str(tmp_path / f"r.{fmt}")]) == 0
        text = (tmp_path / f"r.{fmt}").read_text()
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "\\|" in (tmp_path / "r.md").read_text().split("### Accelerator compatibility")[1]
    capsys.readouterr()
