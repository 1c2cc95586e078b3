"""Errors keep their type and their cause: across the process boundary, under --debug, and in loaders,
where the user's failure is exit 2 and ours is exit 4."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from ondevice.cli import main
from ondevice.core.errors import (
    BadInputError,
    InternalError,
    OndeviceError,
    first_line,
    one_line,
    raised_by_ondevice,
)
from ondevice.core.isolate import EXITED, RAISED, SIGNAL, TIMEOUT, IsolatedFailure, Prestarted, call_isolated

ROOT = str(Path(__file__).resolve().parents[2])


def _tiny_onnx(path: Path) -> Path:
    """A one-node ONNX model (Relu on 1x4), built without any exporter."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ---- typed failures across the process boundary ---------------------------------------------------


def test_a_raised_exception_comes_back_typed_with_the_childs_traceback():
    with pytest.raises(IsolatedFailure) as caught:
        call_isolated("ondevice.core.specs:parse_input_spec", {"text": "x:axb"}, timeout=120)
    failure = caught.value
    assert failure.kind == RAISED and failure.signal_name is None
    assert failure.error_type == "ondevice.core.errors.BadInputError"
    assert failure.raised(BadInputError) and failure.raised(OndeviceError)  # its bases count
    assert not failure.raised(ValueError, InternalError)
    assert failure.message == "bad --input 'x:axb': dimension 'a' is not a positive integer"
    assert failure.reason == f"BadInputError: {failure.message}"
    assert "in parse_input_spec" in failure.child_traceback
    printed = "".join(traceback.format_exception(failure))
    assert "In the isolated process:" in printed and "ondevice/core/specs.py" in printed


def test_a_killed_child_is_a_signal_and_an_early_exit_is_an_exit():
    with pytest.raises(IsolatedFailure) as killed:
        call_isolated("os:abort", {}, timeout=120)
    assert killed.value.kind == SIGNAL and killed.value.signal_name == "SIGABRT"
    assert killed.value.error_type is None and not killed.value.raised(Exception)
    with pytest.raises(IsolatedFailure) as exited:
        call_isolated("os:_exit", {"status": 3}, timeout=120)
    assert exited.value.kind == EXITED and exited.value.reason.startswith("process exited with code 3")


def test_a_child_past_its_timeout_is_a_timeout():
    sleeper = {"args": [sys.executable, "-c", "import time; time.sleep(3)"]}
    with pytest.raises(IsolatedFailure) as caught:
        call_isolated("subprocess:call", sleeper, timeout=1)
    assert caught.value.kind == TIMEOUT and caught.value.reason == "timed out after 1 s"


def test_a_prestarted_child_imports_first_then_makes_the_call_it_is_sent():
    # A preload that fails to import is the call's to report, not the start's.
    with Prestarted(preload=("json", "no_such_module_at_all")) as process:
        process.send("posixpath:basename", {"p": "/models/resnet.onnx"})
        assert process.result(timeout=120) == "resnet.onnx"


def test_a_prestarted_child_is_ended_unused_and_its_crash_is_a_signal():
    process = Prestarted(preload=("json",))
    pid = process._proc.pid
    process.close()  # it waits for a call that never comes; close must end it, not hang
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with Prestarted() as process:
        process.send("os:abort", {})
        with pytest.raises(IsolatedFailure) as killed:
            process.result(timeout=120)
    assert killed.value.kind == SIGNAL and killed.value.signal_name == "SIGABRT"


# ---- --debug shows the cause; without it, one line -------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "ondevice", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600
    )


def test_debug_shows_the_framework_error_behind_a_bad_model_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model at all")
    plain = _cli("export", str(bad), "--to", "onnx", "-o", str(tmp_path / "a"), cwd=tmp_path)
    assert plain.returncode == 2
    assert plain.stdout.strip().splitlines() == [plain.stdout.strip()]  # one line
    assert plain.stdout.startswith("FAILED (malformed or truncated ONNX file") and "DecodeError" in plain.stdout
    assert "Traceback" not in plain.stderr

    debug = _cli("--debug", "export", str(bad), "--to", "onnx", "-o", str(tmp_path / "b"), cwd=tmp_path)
    assert debug.returncode == 2  # --debug shows more; it never changes the exit code
    assert debug.stdout.strip().splitlines()[-1] == plain.stdout.strip().replace(str(tmp_path / "a"), "")
    assert "google.protobuf.message.DecodeError" in debug.stderr  # the framework's class, by name
    assert "The above exception was the direct cause of the following exception" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("ondevice.core.errors.BadInputError: malformed")


# ---- loaders: the user's failure is exit 2, ours is exit 4 -----------------------------------------


def test_a_factory_that_fails_in_its_own_code_is_the_users_error(tmp_path, capsys):
    factory = tmp_path / "factory.py"
    factory.write_text("def build():\n    return None.eval()\n")  # an AttributeError in the user's code
    code = main(["export", f"{factory}:build", "--to", "onnx", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 2
    assert out.startswith(f"FAILED (factory {factory}:build raised AttributeError: 'NoneType' object has no attribute")


def test_a_bug_in_our_runner_while_loading_the_source_is_exit_4(tmp_path, capsys, monkeypatch):
    """Fault injected: the ONNX runner's dtype table is replaced by None, so our own code raises AttributeError
    while the source loads; the model file is fine, so this must not read as the user's bad input."""
    from ondevice.runtimes import onnxruntime_runner

    model = _tiny_onnx(tmp_path / "tiny.onnx")
    monkeypatch.setattr(onnxruntime_runner, "_ORT_TYPES", None)
    code = main(["export", str(model), "--to", "onnx", "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 4
    assert out.startswith("FAILED (internal error: InternalError: the source model failed on its example inputs")
    assert "raised inside ondevice at ondevice/runtimes/onnxruntime_runner.py:" in out
    assert "a bug in ondevice, not in the input" in out


def test_an_artifact_that_does_not_load_is_exit_2_and_our_bug_loading_it_is_exit_4(tmp_path, monkeypatch):
    """Fault injected in the second half, as above: our runner raises while reading a good artifact."""
    from ondevice import byo
    from ondevice.core.specs import TensorSpec
    from ondevice.runtimes import onnxruntime_runner
    from ondevice.sources import Source

    spec = TensorSpec("x", (1, 4), "float32")
    source = Source("tiny", "onnx", None, [spec], outputs=[TensorSpec("y", (1, 4), "float32")])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07 truncated")
    with pytest.raises(BadInputError, match="did not load in onnxruntime") as user:
        byo.describe_one(source, garbage, [], None, 1)
    assert user.value.__cause__ is not None  # the runtime's own error, kept for --debug

    good = _tiny_onnx(tmp_path / "good.onnx")
    monkeypatch.setattr(onnxruntime_runner, "_ORT_TYPES", None)
    where = "raised inside ondevice at ondevice/runtimes/onnxruntime_runner.py:"
    with pytest.raises(InternalError, match=re.escape(where)) as ours:
        byo.describe_one(source, good, [], None, 1)
    assert isinstance(ours.value.__cause__, AttributeError)


def test_where_an_exception_was_raised_decides_whose_it_is():
    from ondevice.core.specs import parse_input_spec

    with pytest.raises(AttributeError) as ours:
        parse_input_spec(None)  # type: ignore[arg-type]  # our code fails on a value no caller passes
    assert (raised_by_ondevice(ours.value) or "").startswith("ondevice/core/specs.py:")
    with pytest.raises(AttributeError) as theirs:
        raise AttributeError("raised in a test, not in ondevice")
    assert raised_by_ondevice(theirs.value) is None
    assert raised_by_ondevice(ValueError("never raised")) is None


def test_a_precision_check_that_could_not_run_is_recorded_not_skipped(tmp_path, monkeypatch):
    """Fault injected with a stand-in: a file the runtime loads but the precision reader cannot read is not
    something a tiny model produces, so the reader is replaced by one that raises."""
    import json

    from ondevice import pipeline

    source, artifact = _tiny_onnx(tmp_path / "source.onnx"), _tiny_onnx(tmp_path / "artifact.onnx")

    def unreadable(*_args, **_kwargs):
        raise OSError("precision reader stand-in: unreadable")

    monkeypatch.setattr(pipeline, "check_precision", unreadable)
    report_path = tmp_path / "out" / "report.json"
    code = main(["validate", str(source), str(artifact), "--samples", "2", "--runs", "3", "--report", str(report_path)])
    (target,) = json.loads(report_path.read_text())["targets"]
    assert code == 0 and target["status"] == "passed"
    assert target["precision"] == {
        "requested": "fp32",
        "found": None,
        "checked": False,
        "reason": "OSError: precision reader stand-in: unreadable",
    }


def test_callers_test_the_childs_exception_type_not_its_text(tmp_path):
    """A Keras file a fresh process cannot load: the child raises NotReloadable, and the parent knows it by
    type (NotPortable: the in-process fallback applies) with the one-line reason free of the class name."""
    from ondevice.converters._keras import NotPortable, NotReloadable, run_isolated
    from ondevice.converters.quantize_tflite import _isolated
    from ondevice.converters.registry import ConversionJob, StrategyFailed
    from ondevice.core.specs import TensorSpec
    from ondevice.sources import Source

    broken = tmp_path / "model.keras"
    broken.write_bytes(b"PK not a keras archive")
    source = Source("model.keras", "keras", None, [TensorSpec("x", (1, 4), "float32")], path=broken)
    source.outputs = [TensorSpec("y", (1, 4), "float32")]
    with pytest.raises(NotPortable) as caught:
        run_isolated(ConversionJob(source, "tflite", tmp_path), "concrete", tmp_path / "model.tflite")
    reload_refused = "TFLite conversion failed: cannot reload the Keras model in a fresh process"
    assert str(caught.value).startswith(reload_refused) and "NotReloadable" not in str(caught.value)
    assert isinstance(caught.value.__cause__, IsolatedFailure) and caught.value.__cause__.raised(NotReloadable)

    kwargs = {"model_path": str(broken), "inputs": [["x", [1, 4], "float32"]], "outputs": ["y"], "out_path": "x"}
    with pytest.raises(StrategyFailed) as quantized:
        _isolated("ondevice.converters._keras:convert_file", {**kwargs, "mode": "concrete"}, "fp16 conversion")
    assert str(quantized.value).startswith("fp16 conversion failed: cannot reload the Keras model")


def test_a_reason_line_is_the_first_non_blank_line_without_colours():
    coloured = RuntimeError("\n  \x1b[31mERROR:\x1b[0m unsupported op GELU  \nTraceback follows\n")
    assert first_line(coloured) == "ERROR: unsupported op GELU"
    assert one_line(coloured) == "RuntimeError: ERROR: unsupported op GELU"
    assert first_line(ValueError()) == "ValueError"  # an empty message still says something
    assert one_line(ValueError("   ")) == "ValueError"
    assert len(one_line(ValueError("x" * 1000))) == 300
    assert first_line(ValueError("x" * 1000), 160) == "x" * 160
