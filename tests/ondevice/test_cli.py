"""The command line: verdict lines, exit codes and fail-closed behaviour."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ondevice.cli import main
from tests.conftest import FACTORY_FILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_cli(*args, cwd=ROOT):
    """Run `python -m ondevice` in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "ondevice", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def last_line(text):
    return text.strip().splitlines()[-1]


def test_help_imports_no_framework():
    code = (
        "import sys\nfrom ondevice.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'openvino', 'onnxruntime', 'onnx2tf', 'keras', 'onnx',"
        " 'tf2onnx', 'litert_torch', 'numpy') if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr


def test_doctor_lists_every_runtime(capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 0
    for name in ("onnxruntime", "openvino", "ai-edge-litert", "torch", "tensorflow", "onnx2tf"):
        assert name in out
    from ondevice.cpu import cpu_info

    cpu_line = next(line for line in out.splitlines() if line.startswith("cpu "))
    assert cpu_info()["isa_class"] in cpu_line and f"{cpu_info()['cores']} cores" in cpu_line
    assert any(line.startswith("int8 ") and "avx2" in line for line in out.splitlines())
    assert last_line(out).startswith("PASSED")


def test_validate_against_other_weights_fails_closed(torch_cnn_check, capsys, tmp_path):
    """Artifacts of one model validated against a model with different weights: exit 1."""
    _, out = torch_cnn_check
    code = main(
        ["validate", f"{FACTORY_FILE}:cnn_other_weights", str(out), "--runs", "5", "--report", str(tmp_path / "r.json")]
    )
    text = capsys.readouterr().out
    assert code == 1
    line = last_line(text)
    assert line.startswith("FAILED (") and "onnx: failed" in line and "tflite: failed" in line
    assert "openvino: failed" in line and str(tmp_path / "r.json") in line
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is False and data["exit_code"] == 1
    assert all(t["status"] == "failed" for t in data["targets"])
    assert all(t["parity"]["outputs"][0]["max_abs_err"] > 1e-3 for t in data["targets"])


def test_validate_same_model_passes(torch_cnn_check, capsys, tmp_path):
    _, out = torch_cnn_check
    code = main(
        [
            "validate",
            f"{FACTORY_FILE}:cnn",
            str(out),
            "--runs",
            "5",
            "--samples",
            "3",
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0
    assert last_line(capsys.readouterr().out).startswith("PASSED (onnx, tflite, openvino)")
    assert json.loads((tmp_path / "r.json").read_text())["inputs"]["samples"] == 3


def test_tampered_artifact_is_refused(torch_cnn_check, tmp_path, capsys):
    _, out = torch_cnn_check
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    code = main(["validate", f"{FACTORY_FILE}:cnn", str(copy)])
    assert code == 2
    assert "does not match the sha256" in last_line(capsys.readouterr().out)


def test_truncated_onnx_exits_2_without_traceback(torch_cnn_check, tmp_path):
    _, out = torch_cnn_check
    data = (out / "model.onnx").read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[: len(data) // 2])
    proc = run_cli("check", str(broken), "--to", "onnx", "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert last_line(proc.stdout).startswith("FAILED (malformed or truncated ONNX file")
    assert proc.stdout.strip().count("\n") == 0, "expected exactly one line"


@pytest.mark.parametrize(
    "args,expected",
    [
        (["check", "nowhere.onnx", "--to", "onnx"], "model not found: nowhere.onnx"),
        (["check", f"{FACTORY_FILE}:cnn", "--input", "x:1xAx3", "--to", "onnx"], "bad --input"),
        (["check", f"{FACTORY_FILE}:raises", "--to", "onnx"], "raised RuntimeError: weights file is corrupt"),
        (["check", f"{FACTORY_FILE}:no_such_factory", "--to", "onnx"], "has no callable 'no_such_factory'"),
        (["check", f"{FACTORY_FILE}:cnn", "--to", "onnx", "--strategy", "nope"], "unknown strategy 'nope'"),
        (["check", f"{FACTORY_FILE}:cnn", "--to", "onnx", "--dynamic", "nope:0"], "the model has no input 'nope'"),
        (["check", f"{FACTORY_FILE}:cnn", "--to", "onnx", "--dynamic", "input:7"], "axis 7 is out of range"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, expected, tmp_path, capsys):
    code = main([*args, "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out.strip()
    assert code == 2
    assert out.count("\n") == 0 and out.startswith("FAILED (") and expected in out


def test_pickled_model_refused_without_trust(tmp_path, capsys):
    import torch

    from tests.models import cnn

    path = tmp_path / "whole.pt"
    torch.save(cnn()[0], path)
    code = main(["check", str(path), "--input", "x:1x3x64x64", "--to", "onnx", "-o", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 2 and "--trust-pickle" in out and "pickled" in out
    code = main(
        [
            "check",
            str(path),
            "--input",
            "x:1x3x64x64",
            "--to",
            "onnx",
            "-o",
            str(tmp_path / "o"),
            "--trust-pickle",
            "--runs",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().out


def test_nan_output_fails_parity(tmp_path, capsys):
    code = main(["check", f"{FACTORY_FILE}:nan_output", "--to", "onnx", "-o", str(tmp_path / "o"), "--runs", "3"])
    out = capsys.readouterr().out
    assert code == 1
    assert "NaN" in out and last_line(out).startswith("FAILED (onnx: failed")


def test_constant_output_is_inconclusive_unless_allowed(tmp_path, capsys):
    code = main(["check", f"{FACTORY_FILE}:dead_relu", "--to", "onnx", "-o", str(tmp_path / "a"), "--runs", "3"])
    out = capsys.readouterr().out
    assert code == 1
    assert "onnx: inconclusive" in last_line(out) and "'output' barely changes" in last_line(out)
    code = main(
        [
            "check",
            f"{FACTORY_FILE}:dead_relu",
            "--to",
            "onnx",
            "-o",
            str(tmp_path / "b"),
            "--runs",
            "3",
            "--allow-inconclusive",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["targets"][0]["status"] == "inconclusive" and report["targets"][0]["inconclusive"] == ["output"]


def test_check_end_to_end_in_a_fresh_process(tmp_path):
    """The README's main job, as a user runs it: bundled example, all three targets."""
    # A relative output folder, as in the README: workers must not depend on the caller's cwd.
    proc = run_cli("check", "ondevice.examples.tiny_cnn:build", "-o", "demo", "--runs", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_line(proc.stdout) == "PASSED (onnx, tflite, openvino) - report: demo/report.json"
    # stderr holds ondevice's progress, one line per stage off a terminal, and no framework noise
    stages = proc.stderr.strip().splitlines()
    assert all(re.match(r"^\[ *\d+\.\ds\] [\w\[\]-]+: ", line) for line in stages), proc.stderr[-2000:]
    assert any(line.endswith("tflite: validating: 8 samples, then timing") for line in stages)
    for name in ("report.json", "report.md", "manifest.json", "model.onnx", "model.tflite", "model.xml", "model.bin"):
        assert (tmp_path / "demo" / name).exists(), name
