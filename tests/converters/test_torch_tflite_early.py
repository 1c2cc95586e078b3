"""torch-tflite-litert converts in a process started with the export (by the CLI, before the source loads).
Both faults here are injected by replacing the registered starter: a converter process that dies, or a
start that fails, cannot be produced on demand with a real model."""

from __future__ import annotations

import json

import pytest

import ondevice
from ondevice.converters import registry
from ondevice.core.isolate import Prestarted
from ondevice.examples.tiny_cnn import build


def _check(out, strategy="torch-tflite-litert"):
    model, example = build()
    return ondevice.check(model, example, targets=["tflite"], out_dir=out, samples=2, runs=3, strategy=strategy)


def _tflite_entry(out) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] + manifest["failures"] if a["target"] == "tflite")


def test_a_conversion_process_that_dies_rejects_the_strategy(tmp_path, monkeypatch):
    def crashing_start(job):
        process = Prestarted()
        process.send("os:abort", {})
        return process

    registry.starter_for("torch-tflite-litert")  # loads the routes, so the patch replaces the real starter
    monkeypatch.setitem(registry._STARTERS, "torch-tflite-litert", crashing_start)
    report = _check(tmp_path)
    result = report.targets[0]
    assert result.status == "conversion_error" and report.exit_code != 0
    assert "litert-torch's conversion process failed: process killed by signal 6 (SIGABRT)" in result.error
    assert not (tmp_path / "model.tflite").exists()


def test_a_start_that_fails_leaves_the_conversion_to_this_process(tmp_path, monkeypatch):
    def failing_start(job):
        raise RuntimeError("torch.export refused the model")

    registry.starter_for("torch-tflite-litert")
    monkeypatch.setitem(registry._STARTERS, "torch-tflite-litert", failing_start)
    report = _check(tmp_path)
    result = report.targets[0]
    assert result.status == "passed", result.error
    assert result.parity["outputs"][0]["max_abs_err"] < 1e-5
    assert not any("separate process" in note for note in _tflite_entry(tmp_path)["notes"])


@pytest.mark.parametrize("forced", [None, "torch-tflite-litert"])
def test_the_real_start_converts_beside_the_export(tmp_path, forced):
    report = _check(tmp_path, strategy=forced)
    assert report.targets[0].status == "passed", report.targets[0].error
    assert any("separate process started with the export" in note for note in _tflite_entry(tmp_path)["notes"])


def test_the_cli_starts_the_process_before_the_source_loads(tmp_path):
    """`ondevice check` begins importing litert-torch before it imports the model's module; the export takes
    that process, and nothing is left running."""
    from ondevice.cli import main
    from ondevice.core import isolate

    code = main(["check", "ondevice.examples.tiny_cnn:build", "--to", "tflite", "-o", str(tmp_path), "--quiet"])
    assert code == 0
    notes = _tflite_entry(tmp_path)["notes"]
    assert any("separate process started before the source was loaded" in note for note in notes), notes
    assert not isolate._SPARES


def test_warmed_starts_litert_only_where_it_is_the_first_strategy_and_ends_what_no_one_took():
    from ondevice.core import isolate

    with registry.warmed(("torch", "keras"), ["onnx", "tflite"]):
        ((process,),) = isolate._SPARES.values()  # litert-torch's, for a source that may be PyTorch
        assert process.spare and process._proc.poll() is None
    assert not isolate._SPARES and process._proc.poll() is not None  # nobody took it: ended
    for frameworks, forced in [(("keras", "onnx"), None), (("torch",), "torch-tflite-onnx2tf")]:
        with registry.warmed(frameworks, ["tflite"], forced):
            assert not isolate._SPARES


def test_what_a_source_may_be_is_read_from_its_spec_and_a_missing_file_starts_nothing(tmp_path):
    from ondevice.core import isolate
    from ondevice.sources import frameworks_of_spec

    for name, expected in [("m.pt2", ("torch",)), ("m.onnx", ("onnx",)), ("m.keras", ("keras",))]:
        (tmp_path / name).write_bytes(b"x")
        assert frameworks_of_spec(str(tmp_path / name)) == expected
    assert frameworks_of_spec("ondevice.examples.tiny_cnn:build") == ("torch", "keras", "onnx")
    assert frameworks_of_spec(f"{tmp_path / 'missing.py'}:build") == ()
    assert frameworks_of_spec(str(tmp_path / "missing.pt")) == ()
    with registry.warmed(frameworks_of_spec(f"{tmp_path / 'missing.py'}:build"), ["tflite"]):
        assert not isolate._SPARES
