"""Leave no trace: a run writes nothing outside -o, and -o holds exactly that run's files.

The end-to-end runs start the real command line in a fresh process, from a read-only current
directory, with HOME and TMPDIR pointed at fresh folders, and compare what those hold before and
after. Every target and every precision runs, so every converter, quantizer and runtime (and the
subprocesses they use) is exercised. The Keras tagger is the model whose ONNX form makes
onnxruntime's quantization tools write temporaries to the current directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ondevice.core.scratch import file_mode
from tests.conftest import FACTORY_FILE

TARGETS = ("onnx", "tflite", "openvino")
PRECISIONS = (None, "fp16", "dynamic-int8", "int8")
REPORTS = {"report.json", "report.md", "report.html", "junit.xml"}
# Variables that would point a tool somewhere else than HOME and TMPDIR.
_REDIRECTS = (
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "KERAS_HOME",
    "TEMP",
    "TMP",
    "PYTHONDONTWRITEBYTECODE",
)


def listing(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, as relative paths."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


class Run:
    """One `ondevice` command in a fresh process, from a read-only cwd with a fresh HOME and TMPDIR."""

    def __init__(self, root: Path, factory_file: str | None = None):
        self.cwd, self.home, self.tmp, self.out = (root / "cwd", root / "home", root / "tmp", root / "out")
        for folder in (self.cwd, self.home, self.tmp):
            folder.mkdir(parents=True)
        if factory_file:
            # The factory sits in the cwd, as a user's would: importing it must not leave __pycache__.
            shutil.copy(factory_file, self.cwd / "factories.py")
        self.before = {name: listing(getattr(self, name)) for name in ("cwd", "home", "tmp")}
        self.cwd.chmod(0o555)

    def __call__(self, *args, timeout: float = 900) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in _REDIRECTS}
        env.update(HOME=str(self.home), TMPDIR=str(self.tmp))
        try:
            return subprocess.run(
                [sys.executable, "-m", "ondevice", *args, "-o", str(self.out)],
                cwd=self.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        finally:
            self.cwd.chmod(0o755)  # so pytest can clean up

    def strays(self) -> dict:
        """What appeared in the cwd, HOME or TMPDIR."""
        found = {name: sorted(listing(getattr(self, name)) - self.before[name]) for name in self.before}
        return {name: paths for name, paths in found.items() if paths}


def check_out_folder(out: Path) -> dict:
    """-o holds the manifest, the files it lists and the reports, each with a plain write's mode."""
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {a["path"] for a in manifest["artifacts"]} | {f["path"] for a in manifest["artifacts"] for f in a["files"]}
    assert set(os.listdir(out)) == listed | {"manifest.json"} | REPORTS
    modes = {name: stat.S_IMODE((out / name).stat().st_mode) for name in os.listdir(out)}
    assert modes == {name: file_mode() for name in modes}
    return manifest


def check_every_target(run: Run, proc: subprocess.CompletedProcess) -> None:
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith(("PASSED", "FAILED")), output
    assert (run.out / "report.json").exists() and (run.out / "manifest.json").exists(), output
    assert run.strays() == {}
    check_out_folder(run.out)
    report = json.loads((run.out / "report.json").read_text())
    # Every converter and quantizer ran (a target may fail on numbers; that is other tests' business).
    assert {(t["target"], t["quantize"]) for t in report["targets"]} == {(t, p) for t in TARGETS for p in PRECISIONS}


def check_all(run: Run, source: str) -> subprocess.CompletedProcess:
    proc = run(
        "check",
        source,
        "--to",
        ",".join(TARGETS),
        "--quantize",
        "fp16,dynamic-int8,int8",
        "--runs",
        "5",
        "--samples",
        "4",
    )
    check_every_target(run, proc)
    return proc


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    run = Run(tmp_path_factory.mktemp("torch"), FACTORY_FILE)
    return run, run(
        "check",
        "factories.py:cnn",
        "--to",
        ",".join(TARGETS),
        "--quantize",
        "fp16,dynamic-int8,int8",
        "--runs",
        "5",
        "--samples",
        "4",
    )


@pytest.mark.slow
def test_torch_source_leaves_no_trace(torch_run):
    check_every_target(*torch_run)


@pytest.mark.slow
def test_keras_source_leaves_no_trace(tmp_path):
    run = Run(tmp_path, FACTORY_FILE)
    check_all(run, "factories.py:keras_tagger")


@pytest.mark.slow
def test_onnx_source_leaves_no_trace(tmp_path, torch_run):
    source = tmp_path / "source" / "model.onnx"
    source.parent.mkdir()
    assert (torch_run[0].out / "model.onnx").exists(), torch_run[1].stdout[-3000:]
    shutil.copy(torch_run[0].out / "model.onnx", source)
    check_all(Run(tmp_path / "run"), str(source))


def _export(out: Path, targets, **options):
    import ondevice

    return ondevice.export(f"{FACTORY_FILE}:cnn", targets=targets, out_dir=out, **options)


def test_second_export_removes_the_first_ones_artifacts_only(tmp_path):
    out = tmp_path / "out"
    _export(out, ("onnx", "openvino"), keep_work=True)
    assert (out / ".work").is_dir() and any((out / ".work").glob("openvino-*"))  # kept for debugging
    (out / "notes.txt").write_text("the user's own file")
    _export(out, ("onnx",))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["model.onnx"]
    # model.xml / model.bin were the first run's; the user's file and nothing else stays.
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx", "notes.txt"]
    assert stat.S_IMODE((out / "manifest.json").stat().st_mode) == file_mode()


def test_killed_run_leaves_nothing_for_the_next(tmp_path):
    """A run killed after installing an artifact: the next run removes its .work and that artifact."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ondevice",
            "export",
            f"{FACTORY_FILE}:cnn",
            "--to",
            "onnx,tflite,openvino",
            "-o",
            str(out),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not (out / "model.onnx").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # the command forwards it to its run, which dies without cleaning up
    proc.wait(timeout=120)
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    assert (out / "model.onnx").exists() and (out / ".work").is_dir()
    _export(out, ("openvino",))
    assert sorted(os.listdir(out)) == ["manifest.json", "model.bin", "model.xml"]


def test_failed_run_leaves_previous_artifacts_to_the_next_export(tmp_path, capfd):
    """A run that fails before converting keeps them (it may not know its source yet); the next export
    removes them, and only them."""
    from ondevice.cli import main

    out = tmp_path / "out"
    _export(out, ("onnx", "openvino"))
    assert main(["export", str(tmp_path / "missing.onnx"), "--to", "onnx", "-o", str(out)]) == 2
    assert {"model.onnx", "model.xml", "model.bin"} <= set(os.listdir(out))
    assert not (out / "manifest.json").exists()
    _export(out, ("onnx",))
    assert sorted(os.listdir(out)) == ["manifest.json", "model.onnx"]


def test_source_kept_in_the_output_folder_is_not_removed(tmp_path):
    out = tmp_path / "out"
    _export(out, ("onnx",))
    import ondevice

    ondevice.export(str(out / "model.onnx"), targets=("openvino",), out_dir=out)
    assert sorted(os.listdir(out)) == ["manifest.json", "model.bin", "model.onnx", "model.xml"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["path"] for a in manifest["artifacts"]] == ["model.xml"]


def test_relative_source_reaches_the_converter_processes(tmp_path, monkeypatch):
    """Converter processes work in their own scratch folder: a SOURCE named relative to the user's
    cwd must still reach them (else the first strategies fail and the in-process fallback wins)."""
    import ondevice
    from tests.models import keras_cnn

    keras_cnn()[0].save(str(tmp_path / "model.keras"))
    monkeypatch.chdir(tmp_path)
    artifacts = ondevice.export("model.keras", targets=("tflite",), out_dir="out")
    assert artifacts.get("tflite").strategy == "keras-tflite-converter", artifacts.get("tflite").attempts


def test_relative_output_folder_reaches_the_quantizer_processes(tmp_path, monkeypatch):
    """``-o out`` as the README writes it: the float artifact a subprocess quantizer reads is found."""
    monkeypatch.chdir(tmp_path)
    artifacts = _export(Path("out"), ("tflite",), quantize="dynamic-int8")
    assert artifacts.failures == [] and artifacts.get("tflite", "dynamic-int8") is not None
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "model.dynamic-int8.tflite", "model.tflite"]


def test_scratch_space_is_the_runs_temp_folder_and_goes_at_the_end(tmp_path, monkeypatch):
    import tempfile
    import threading

    from ondevice.core.errors import InternalError
    from ondevice.core.scratch import child_env, run_scratch

    monkeypatch.setenv("TMPDIR", str(tmp_path / "user-tmp"))
    out = tmp_path / "out"
    with run_scratch(out) as space:
        assert space.root == out / ".work"
        assert Path(tempfile.gettempdir()) == out / ".work" / "tmp" and os.environ["TMPDIR"] == tempfile.gettempdir()
        env = child_env(space.folder("child"))
        assert env["HOME"] == str(out / ".work" / "child" / "home") and env["TMPDIR"].startswith(str(space.root))
        errors = []

        def other_thread():
            try:
                with run_scratch(tmp_path / "other"):
                    pass
            except InternalError as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1  # process-wide settings: a second concurrent run would share them
    assert not (out / ".work").exists() and os.environ["TMPDIR"] == str(tmp_path / "user-tmp")
    assert tempfile.gettempdir() != str(out / ".work" / "tmp")
