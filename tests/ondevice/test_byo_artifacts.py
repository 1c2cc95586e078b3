"""Artifacts made outside ondevice, by the plain converters, validated as they are (issue: bring your own).

Each file is made by the converter's own call with its defaults (tests/byo_models.py); ondevice gets
only the source and the file, and must pair inputs and outputs itself, record how, and ask where the
evidence does not decide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ondevice
from ondevice.cli import main
from ondevice.core.specs import TensorSpec
from ondevice.layout import AmbiguousMatch, match_external, parse_io_map
from tests import byo_models, models

ROOT = Path(__file__).resolve().parents[2]
BYO = str(ROOT / "tests" / "byo_models.py")
MODELS = str(ROOT / "tests" / "models.py")
FAST = ["--samples", "3", "--runs", "3"]


@pytest.fixture(scope="session")
def plain_files(tmp_path_factory):
    """Every plain converter's file for the CNN, the LSTM and the two-input, two-output Transformer."""
    out = tmp_path_factory.mktemp("plain")
    files = {}
    for name, factory in (("cnn", models.cnn), ("lstm", models.lstm), ("two", byo_models.torch_two_streams)):
        model, args = factory()
        args = args if isinstance(args, tuple) else (args,)
        legacy = byo_models.plain_torch_onnx(model, args, out / f"{name}_legacy.onnx", dynamo=False)
        files[name] = {
            "legacy": legacy,
            "litert": byo_models.plain_litert_torch(model, args, out / f"{name}_litert.tflite"),
        }
        if name != "lstm":  # the dynamo exporter's LSTM adds seconds and nothing new to matching
            files[name]["dynamo"] = byo_models.plain_torch_onnx(model, args, out / f"{name}_dynamo.onnx", dynamo=True)
        files[name]["openvino"] = byo_models.plain_openvino(legacy, out / f"{name}_ov.xml")
    # onnx2tf once, on the model with both a 4-D image (NHWC) and 3-D sequences (transposed)
    files["two"]["onnx2tf"] = byo_models.plain_onnx2tf(files["two"]["dynamo"], out / "onnx2tf")
    return files


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain_keras")
    files = {}
    for name, factory in (
        ("keras_cnn", models.keras_cnn),
        ("keras_lstm", models.keras_lstm),
        ("keras_two_inputs", byo_models.keras_two_inputs),
    ):
        model, _ = factory()
        files[name] = byo_models.plain_keras_tflite(model, out / f"{name}.tflite")
    model, _ = models.keras_cnn()
    files["keras_cnn_ov"] = byo_models.plain_openvino(model, out / "keras_cnn_ov.xml")
    return files


def _validate(source, files, report, *extra):
    code = main(["validate", source, *map(str, files), "--report", str(report), *FAST, *extra])
    return code, json.loads(Path(report).read_text())


def _pairs(target_entry):
    io = target_entry["io"]
    return {m["name"]: (m["artifact_name"], m["layout"], m["matched_by"]) for m in io["inputs"] + io["outputs"]}


def test_torch_cnn_files_from_every_plain_converter(plain_files, tmp_path, capsys):
    cnn = plain_files["cnn"]
    float_files = [cnn["dynamo"], cnn["legacy"], cnn["litert"]]
    code, report = _validate(f"{MODELS}:cnn", float_files, tmp_path / "report.json")
    assert code == 0, capsys.readouterr().out
    pairs = [_pairs(t) for t in report["targets"]]
    assert pairs[0] == {"input": ("input", None, "name"), "output": ("linear", None, "shape")}
    assert pairs[1]["input"] == ("input.1", None, "shape")  # legacy export names nothing usefully
    assert pairs[2] == {"input": ("args_0", None, "position"), "output": ("output_0_output", None, "position")}
    assert all(
        t["strategy"] == "external" and t["parity"]["outputs"][0]["max_abs_err"] < 1e-4 for t in report["targets"]
    )
    # ondevice's own manifest beside the report, naming the user's files where they are
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["external"] is True
    assert [a["path"] for a in manifest["artifacts"]] == [str(p.resolve()) for p in float_files]
    assert all(len(a["sha256"]) == 64 and a["precision"]["precision"] == "fp32" for a in manifest["artifacts"])
    assert not any(p.name == "manifest.json" for p in cnn["legacy"].parent.iterdir())


def test_openvino_save_model_fp16_is_a_precision_change(plain_files, tmp_path, capsys):
    ir = plain_files["cnn"]["openvino"]
    code, report = _validate(f"{MODELS}:cnn", [ir], tmp_path / "report.json")
    target = report["targets"][0]
    assert code == 1 and target["status"] == "failed"
    assert target["precision"]["found"] == "fp16" and target["precision"]["requested"] == "fp32"
    assert "precision fp16 found where fp32 was requested" in capsys.readouterr().out.splitlines()[-1]
    # (declared with --precision fp16, an IR passes: see the two-stream Transformer below)


def test_lstm_files_match_by_position_and_shape(plain_files, tmp_path, capsys):
    lstm = plain_files["lstm"]
    code, report = _validate(
        f"{MODELS}:lstm",
        [lstm["legacy"], lstm["litert"], lstm["openvino"]],
        tmp_path / "report.json",
        "--allow-precision-change",
    )
    assert code == 0, capsys.readouterr().out
    assert [_pairs(t)["x"][2] for t in report["targets"]] == ["shape", "position", "shape"]
    assert report["targets"][2]["precision"]["found"] == "fp16"
    assert any("precision change allowed" in note for note in report["targets"][2]["notes"])


def test_two_input_two_output_transformer_through_every_converter(plain_files, tmp_path, capsys):
    two = plain_files["two"]
    files = [two["dynamo"], two["legacy"], two["litert"], two["onnx2tf"], two["openvino"]]
    _code, report = _validate(f"{BYO}:torch_two_streams", files, tmp_path / "report.json", "--precision", "fp16")
    out = capsys.readouterr().out
    targets = report["targets"]
    assert [t["target"] for t in targets] == ["onnx", "onnx", "tflite", "tflite", "openvino"]
    dynamo, legacy, litert, onnx2tf, ir = (_pairs(t) for t in targets)
    assert dynamo["tokens"] == ("tokens", None, "name") and dynamo["image"] == ("image", None, "name")
    assert litert["output_1"] == ("output_1_output", None, "position")
    # onnx2tf: the image NHWC, the 3-D sequences transposed, outputs Identity_N in ONNX order
    assert onnx2tf["image"] == ("image", "NCHW->NHWC", "name")
    assert onnx2tf["tokens"] == ("tokens", "NCW->NWC", "name")
    assert onnx2tf["output_1"] == ("Identity_1", "NCW->NWC", "position")
    assert legacy["output_0"][2] == "shape" and ir["output_1"][2] == "shape"
    # the float files were declared fp16 here, so they fail the precision check; the IR passes
    assert [t["status"] for t in targets] == ["failed"] * 4 + ["passed"], out
    assert all(max(o["max_abs_err"] for o in t["parity"]["outputs"]) < 1e-4 for t in targets[:4])


def test_keras_tflite_and_openvino_files(keras_files, tmp_path, capsys):
    code, report = _validate(
        f"{MODELS}:keras_cnn",
        [keras_files["keras_cnn"], keras_files["keras_cnn_ov"]],
        tmp_path / "cnn" / "report.json",
        "--allow-precision-change",
    )
    assert code == 0, capsys.readouterr().out
    assert _pairs(report["targets"][0])["image"] == ("image", None, "name")
    code, report = _validate(f"{MODELS}:keras_lstm", [keras_files["keras_lstm"]], tmp_path / "lstm" / "report.json")
    assert code == 0 and _pairs(report["targets"][0])["sequence"] == ("sequence", None, "name")
    # TFLiteConverter put input b before a and named both outputs StatefulPartitionedCall_1: the
    # inputs pair by name, the outputs by their signature names (output_0, output_1), and parity holds
    code, report = _validate(
        f"{BYO}:keras_two_inputs", [keras_files["keras_two_inputs"]], tmp_path / "two" / "report.json"
    )
    pairs = _pairs(report["targets"][0])
    assert code == 0, capsys.readouterr().out
    assert pairs == {
        "a": ("a", None, "name"),
        "b": ("b", None, "name"),
        "first": ("output_0", None, "position"),
        "second": ("output_1", None, "position"),
    }


def test_same_shape_outputs_without_names_ask_for_io_map(tmp_path, capsys):
    model, example = byo_models.torch_twin_outputs()
    onnx_file = byo_models.plain_torch_onnx(model, (example,), tmp_path / "twin.onnx", dynamo=False)
    code = main(
        ["validate", f"{BYO}:torch_twin_outputs", str(onnx_file), "--report", str(tmp_path / "r" / "report.json")]
    )
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 2 and verdict.startswith("FAILED (twin.onnx: 2 pairings of outputs fit by shape")
    assert "--io-map output_0=" in verdict and "will not guess" in verdict
    assert not (tmp_path / "r" / "report.json").exists()
    # the answer it asks for, in the artifact's own output names (crossed over: order is not evidence)
    import onnx

    names = [o.name for o in onnx.load(str(onnx_file)).graph.output]
    code, report = _validate(
        f"{BYO}:torch_twin_outputs",
        [onnx_file],
        tmp_path / "r" / "report.json",
        "--io-map",
        f"output_0={names[1]}",
        "--io-map",
        f"output_1={names[0]}",
    )
    assert code == 1  # the outputs really are crossed: parity says so, with the pairing on record
    assert _pairs(report["targets"][0])["output_0"] == (names[1], None, "io-map")
    code, report = _validate(
        f"{BYO}:torch_twin_outputs",
        [onnx_file],
        tmp_path / "r" / "report.json",
        "--io-map",
        f"output_0={names[0]}",
        "--io-map",
        f"output_1={names[1]}",
    )
    assert code == 0 and _pairs(report["targets"][0])["output_1"] == (names[1], None, "io-map")


def test_layout_that_fits_two_ways_is_asked_about():
    square = [TensorSpec("x", (1, 8, 8))]
    with pytest.raises(AmbiguousMatch, match=r"fits 'x' \[1, 8, 8\] as is or 0,2,1.*--io-map x=x:none"):
        match_external(square, square, "input", layout_moves=True)
    # ONNX/OpenVINO converters keep the source layout: as is, no question
    assert match_external(square, square, "input", layout_moves=False)[0].perm is None
    chosen = match_external(square, square, "input", True, [parse_io_map("x=x:0,2,1")])[0]
    assert (chosen.perm, chosen.matched_by) == ((0, 2, 1), "io-map")
    image = [TensorSpec("img", (1, 3, 16, 16))]
    nhwc = match_external(image, [TensorSpec("serving_default_input:0", (1, 16, 16, 3))], "input", True)[0]
    assert (nhwc.perm, nhwc.matched_by) == ((0, 2, 3, 1), "shape")


def test_api_validates_files_and_gate_reads_the_report(plain_files, tmp_path):
    model, example = models.cnn()
    report = ondevice.validate(
        model, [plain_files["cnn"]["legacy"]], samples=2, runs=2, example_inputs=example, out_dir=tmp_path
    )
    assert report and report.targets[0].io["inputs"][0]["matched_by"] == "shape"
    path = report.write(tmp_path / "report.json")
    assert main(["gate", str(path)]) == 0
    # ondevice's manifest for outside files is not an export: naming its folder is refused
    assert main(["validate", f"{MODELS}:cnn", str(tmp_path)]) == 2


def test_check_artifact_and_progress_lines(plain_files, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable,
        "-m",
        "ondevice",
        "check",
        f"{MODELS}:cnn",
        "--artifact",
        str(plain_files["cnn"]["legacy"]),
        "-o",
        str(tmp_path / "out"),
        *FAST,
    ]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("PASSED (onnx) - report: ")
    stages = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert any("onnx: validating" in line for line in stages) and any("source: " in line for line in stages)
    assert {"report.json", "report.md", "report.html", "junit.xml", "manifest.json"} <= set(
        os.listdir(tmp_path / "out")
    )
    quiet = subprocess.run([*args, "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert quiet.returncode == 0 and len(quiet.stdout.strip().splitlines()) == 1
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("[")]


def test_live_progress_line_redraws_with_elapsed_time():
    import io
    import time

    from ondevice import progress

    stream = io.StringIO()
    with progress.reporting(stream=stream, live=True):
        progress.stage("tflite", "converting with torch-tflite-litert (strategy 1 of 3)")
        time.sleep(0.7)
    text = stream.getvalue()
    assert text.count("\r\x1b[K[") >= 2 and "tflite: converting with torch-tflite-litert" in text
    assert text.endswith("\r\x1b[K")  # the line is cleared before the verdict
    stream = io.StringIO()
    with progress.reporting(enabled=False, stream=stream):
        progress.stage("onnx", "validating")
    assert stream.getvalue() == ""


def test_a_note_goes_above_the_live_line_or_to_stderr_without_one(capsys):
    import io

    from ondevice import progress

    stream = io.StringIO()
    with progress.reporting(stream=stream, live=True):
        progress.stage("tflite[int8]", "quantizing")
        progress.note("warning: calibrated on random inputs")
    text = stream.getvalue()
    # The live line is cleared, the note takes a line of its own, and the stage is drawn again below it.
    assert "\r\x1b[Kwarning: calibrated on random inputs\n" in text
    assert text.index("random inputs\n") < text.rindex("tflite[int8]: quantizing")
    progress.note("warning: no reporter")  # the Python API: no reporter, the warning still reaches stderr
    assert capsys.readouterr().err == "warning: no reporter\n"
