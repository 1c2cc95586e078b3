"""Run a function in a fresh Python process: converters that crash or leak state stay contained.

The callee is named ``package.module:function``; it takes keyword arguments that survive JSON
and returns a JSON-able value. A crash (signal), a timeout or a raised exception becomes an
IsolatedFailure carrying a one-line reason and the tail of what the process printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from .lazy import QUIET_ENV, TELEMETRY_ENV, telemetry_off
from .scratch import child_env as child_env_in
from .scratch import child_folder


class IsolatedFailure(Exception):
    """The isolated call did not return a result."""

    def __init__(self, reason: str, output: str = "", signal_name: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.output = output
        self.signal_name = signal_name


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])  # the folder holding the ondevice package


def call_isolated(
    target: str,
    kwargs: dict,
    timeout: float = 900,
    cwd: str | None = None,
    env: dict | None = None,
    launcher: list[str] | None = None,
):
    """Call ``target(**kwargs)`` in a subprocess and return its result.

    ``launcher`` prefixes the interpreter's command line, e.g. a CPU emulator that runs the call
    on an instruction set this machine lacks.
    """
    # The child's own folder (in the run's scratch space during a run): its working directory
    # unless ``cwd`` is given, and its temp folder and home, so nothing it writes lands elsewhere.
    with child_folder() as tmp:
        request = Path(tmp) / "request.json"
        result = Path(tmp) / "result.json"
        request.write_text(json.dumps({"target": target, "kwargs": kwargs}))
        child_env = {**os.environ, **QUIET_ENV, **TELEMETRY_ENV, **child_env_in(tmp), **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [_project_root(), child_env.get("PYTHONPATH")]))
        try:
            proc = subprocess.run(
                [*(launcher or []), sys.executable, "-m", "ondevice.core.isolate", str(request), str(result)],
                cwd=cwd or tmp,
                env=child_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise IsolatedFailure(f"timed out after {timeout:.0f} s", _text(exc.stdout) + _text(exc.stderr)) from None
        output = proc.stdout + proc.stderr
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise IsolatedFailure(f"process killed by signal {-proc.returncode} ({name})", output, name)
        if not result.exists():
            raise IsolatedFailure(f"process exited with code {proc.returncode}: {last_line(output)}", output)
        payload = json.loads(result.read_text())
        if "error" in payload:
            raise IsolatedFailure(payload["error"], output)
        return payload["value"]


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def last_line(output: str) -> str:
    """The last meaningful line of a tool's output (its error, usually)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _main(request_path: str, result_path: str) -> None:
    import importlib

    request = json.loads(Path(request_path).read_text())
    module_name, _, func_name = request["target"].partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        value = func(**request["kwargs"])
        payload = {"value": value}
    except Exception as exc:  # reported to the parent as a one-line reason
        lines = str(exc).strip().splitlines()
        payload = {"error": f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]}
    Path(result_path).write_text(json.dumps(payload))


if __name__ == "__main__":
    for key, value in {**QUIET_ENV, **TELEMETRY_ENV}.items():
        os.environ.setdefault(key, value)
    telemetry_off()
    _main(sys.argv[1], sys.argv[2])
    sys.stdout.flush()
    # Skip interpreter teardown: some converters crash in their atexit hooks.
    os._exit(0)
