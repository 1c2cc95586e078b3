"""The console command runs its work in a child process and owns the verdict.

User code (a factory, a model's forward) runs inside ondevice. If it calls ``os._exit(0)``, kills
its own process or hangs, the command must still end with ``FAILED (...)`` and a non-zero exit code,
never a silent 0. So ``ondevice ...`` starts ``python -m ondevice ...`` as a child in its own process
group; the child records its exit code in a status file just before it exits, and a child that ends
without one (or runs past ``--timeout``) is reported here. Stdlib only: ``ondevice --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager, suppress
from pathlib import Path

CHILD_ENV = "ONDEVICE_VERDICT_FILE"
EXIT_FAULT = 4
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_supervised = False  # set in the child: the supervisor, not an alarm here, enforces --timeout


class RunTimedOut(BaseException):
    """Raised in-process when ``--timeout`` passes (a BaseException, so user code cannot swallow it)."""

    def __init__(self, seconds: float):
        super().__init__(f"timed out after {seconds:g} s")
        self.seconds = seconds


def is_child() -> bool:
    """True in the process a supervisor started to do the work."""
    return CHILD_ENV in os.environ


def timeout_of(argv: list[str]) -> float | None:
    """``--timeout SECONDS`` from the arguments, or None (a bad value is left for the child to refuse)."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        text = argv[index + 1] if arg == "--timeout" and index + 1 < len(argv) else None
        if arg.startswith("--timeout="):
            text = arg.partition("=")[2]
        if text is not None:
            try:
                value = float(text)
            except ValueError:
                return None
            return value if 0 < value < float("inf") else None
    return None


def supervise(argv: list[str]) -> int:
    """Run ``ondevice argv`` in a child process; its recorded exit code, or 4 with a verdict line of our own."""
    timeout = timeout_of(argv)
    root = str(Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory(prefix="ondevice-run-") as tmp:
        status = Path(tmp) / "verdict.json"
        env = {**os.environ, CHILD_ENV: str(status)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        child = subprocess.Popen([sys.executable, "-m", "ondevice", *argv], env=env, process_group=0)
        with _forwarding(child):
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(child)
                return _verdict(
                    f"timed out after {timeout:g} s; the run and its workers were stopped and "
                    "nothing it wrote is a verdict: find what hangs or raise --timeout"
                )
        recorded = _recorded(status)
    _kill_group(child)  # whatever the child left running (workers of a vanished run) goes with it
    if recorded is not None:
        return recorded
    return _verdict(
        f"the run ended without a verdict ({_how(child.returncode)}); user code such as a factory "
        "or a model's forward may have exited or killed the process: nothing was checked"
    )


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"process exited with code {returncode}"


def _verdict(reason: str) -> int:
    sys.stdout.flush()
    print(f"FAILED ({reason})", flush=True)
    return EXIT_FAULT


def _recorded(status: Path) -> int | None:
    try:
        code = json.loads(status.read_text())["exit_code"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _kill_group(child: subprocess.Popen) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        child.wait(timeout=30)


@contextmanager
def _forwarding(child: subprocess.Popen):
    """Signals sent to the command (Ctrl-C, a CI cancel) reach the child's whole process group."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum, _frame):
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_child(run) -> None:
    """In the supervised child: run the command, record its exit code, exit without interpreter teardown."""
    global _supervised
    status = os.environ.pop(CHILD_ENV)  # not inherited by anything the run starts
    _supervised = True
    code = run(sys.argv[1:])
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    try:
        tmp = f"{status}.tmp"
        Path(tmp).write_text(json.dumps({"exit_code": code}))
        os.replace(tmp, status)
    finally:
        # Teardown can crash in third-party atexit hooks; the verdict is already out.
        os._exit(code)


@contextmanager
def deadline(seconds: float | None):
    """In-process ``--timeout``: raise RunTimedOut after ``seconds`` (main thread only; the supervisor
    enforces it for the console command, killing the child's process group)."""
    if not seconds or _supervised or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum, _frame):
        raise RunTimedOut(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
