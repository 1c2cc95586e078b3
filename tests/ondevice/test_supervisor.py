"""The console command owns its verdict: user code that exits, kills its process or hangs cannot make
`ondevice` end silently or with exit 0. These run `python -m ondevice` as a user or CI step does."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FACTORIES = """
import os, signal, subprocess, sys, time

def exits():
    sys.exit(0)

def hard_exit():
    print("PASSED (onnx) - report: forged", flush=True)
    os._exit(0)

def killed():
    os.kill(os.getpid(), signal.SIGKILL)

def hangs():
    # A grandchild in the same process group: the timeout must take it down too.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    open(os.environ["PID_FILE"], "w").write(str(child.pid))
    time.sleep(300)
"""


def ondevice(*args, env=None, timeout=120):
    full_env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ondevice", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=timeout,
    )


@pytest.fixture
def factories(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "name,code,expected",
    [
        ("exits", 2, "called sys.exit(0) instead of returning a model"),
        ("hard_exit", 4, "the run ended without a verdict (process exited with code 0)"),
        ("killed", 4, "the run ended without a verdict (killed by signal 9 (SIGKILL))"),
    ],
)
def test_user_code_that_exits_or_dies_fails_closed(name, code, expected, factories, tmp_path):
    proc = ondevice("check", f"{factories}:{name}", "--to", "onnx", "-o", tmp_path / "o")
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert last_line(proc.stdout).startswith("FAILED (") and expected in last_line(proc.stdout)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "o" / "report.json").exists()


def test_timeout_stops_the_run_and_its_process_group(factories, tmp_path):
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    proc = ondevice(
        "check",
        f"{factories}:hangs",
        "--to",
        "onnx",
        "-o",
        tmp_path / "o",
        "--timeout",
        "3",
        env={"PID_FILE": str(pid_file)},
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert last_line(proc.stdout).startswith("FAILED (timed out after 3 s")
    assert elapsed < 60
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    assert not _running(grandchild)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie lingers where the container's init does not reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_usage_error_through_the_console_ends_with_the_verdict(tmp_path):
    proc = ondevice("check", "m.onnx", "-o", tmp_path / "o", "--to", "unknown")
    assert proc.returncode == 2
    assert last_line(proc.stdout) == (
        "FAILED (bad invocation: ondevice check: argument --to: unknown target(s) "
        "unknown; choose from onnx, tflite, openvino, executorch; "
        "see ondevice check --help)"
    )
    assert "usage:" in proc.stderr


def test_help_is_fast_and_passes():
    start = time.monotonic()
    proc = ondevice("--help")
    assert proc.returncode == 0 and "export" in proc.stdout
    assert time.monotonic() - start < 10


def test_supervisor_imports_nothing_heavy():
    """The parent process starts the child before importing anything but the standard library."""
    code = (
        "import sys\nfrom ondevice import _supervise, cli\n"
        "print(sorted(m for m in ('numpy', 'torch', 'tensorflow', 'onnx', 'openvino') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_timeout_option_parsing():
    from ondevice._supervise import timeout_of

    assert timeout_of(["check", "m", "--timeout", "2.5"]) == 2.5
    assert timeout_of(["check", "m", "--timeout=7"]) == 7
    assert timeout_of(["check", "m", "--timeout", "nan"]) is None
    assert timeout_of(["check", "m", "--timeout", "-1"]) is None
    assert timeout_of(["check", "m"]) is None
