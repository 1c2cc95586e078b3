"""Every SOURCE form loads and converts: .pt2, TorchScript .pt, .keras, .h5, SavedModel, .onnx."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ondevice.cli import main
from tests import models


def _check(source, tmp_path, capsys, *extra, to="onnx,openvino"):
    out = tmp_path / "out"
    code = main(["check", str(source), "--to", to, "-o", str(out), "--runs", "3", "--samples", "3", *extra])
    text = capsys.readouterr().out
    assert code == 0, text
    report = json.loads((out / "report.json").read_text())
    for target in report["targets"]:
        assert target["status"] == "passed"
        assert target["parity"]["outputs"][0]["max_abs_err"] < 1e-5
    return report


def test_pt2_source(tmp_path, capsys):
    import torch

    model, example = models.cnn()
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(model, (example,)), str(path))
    report = _check(path, tmp_path, capsys, to="onnx,openvino,tflite")
    assert report["source"]["inputs"][0]["shape"] == [1, 3, 64, 64]


def test_torchscript_source_needs_input_spec(tmp_path, capsys):
    import torch

    model, example = models.lstm()
    path = tmp_path / "model.pt"
    torch.jit.trace(model, example).save(str(path))
    assert main(["check", str(path), "--to", "onnx", "-o", str(tmp_path / "x")]) == 2
    assert "--input" in capsys.readouterr().out
    report = _check(path, tmp_path, capsys, "--input", "x:1x10x8")
    assert report["source"]["inputs"] == [{"name": "x", "shape": [1, 10, 8], "dtype": "float32"}]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file_sources(tmp_path, capsys, suffix):
    model, _ = models.keras_cnn()
    path = tmp_path / f"model{suffix}"
    model.save(str(path))
    report = _check(path, tmp_path, capsys)
    assert report["source"]["framework"] == "keras"
    assert report["source"]["inputs"][0]["name"] == "image"


def test_saved_model_source(tmp_path, capsys):
    model, _ = models.keras_cnn()
    path = tmp_path / "saved"
    model.export(str(path), format="tf_saved_model")
    report = _check(path, tmp_path, capsys, to="onnx,openvino,tflite")
    assert report["source"]["inputs"] == [{"name": "image", "shape": [1, 24, 24, 3], "dtype": "float32"}]


def test_truncated_keras_file_exits_2(tmp_path, capsys):
    model, _ = models.keras_cnn()
    path = tmp_path / "model.keras"
    model.save(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert main(["check", str(path), "--to", "onnx", "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().out.startswith("FAILED (malformed or truncated Keras file")


def test_golden_inputs_file(tmp_path, capsys, torch_cnn_check):
    _, out = torch_cnn_check
    golden = tmp_path / "golden.npz"
    np.savez(golden, input=np.random.default_rng(7).normal(0.5, 1.0, (5, 1, 3, 64, 64)).astype(np.float32))
    code = main(
        [
            "validate",
            "ondevice.examples.tiny_cnn:build",
            str(out),
            "--inputs",
            str(golden),
            "--runs",
            "3",
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["inputs"]["kind"] == "file" and report["inputs"]["samples"] == 5
