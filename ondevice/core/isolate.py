"""Run a function in a fresh Python process: converters that crash or leak state stay contained.

The callee is named ``package.module:function``; it takes keyword arguments that survive JSON
and returns a JSON-able value. A crash (signal), a timeout or a raised exception becomes an
IsolatedFailure: a one-line reason, the tail of what the process printed and, for a raised
exception, its type (``module.qualname`` and those of its bases) and the child's traceback, so
callers test the type (``failure.raised(SomeError)``), never the text.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from .lazy import QUIET_ENV, TELEMETRY_ENV, telemetry_off
from .scratch import child_env as child_env_in
from .scratch import child_folder

# How an isolated call ended without a result: what callers branch on instead of the reason's text.
TIMEOUT, SIGNAL, EXITED, RAISED = "timeout", "signal", "exited", "raised"


class IsolatedFailure(Exception):
    """The isolated call did not return a result.

    ``kind`` is one of TIMEOUT, SIGNAL, EXITED, RAISED. For RAISED: ``error_type`` is the child's
    exception as ``module.qualname``, ``error_types`` that and its bases', ``message`` its first
    line, ``child_traceback`` the child's formatted traceback (chained causes included).
    """

    def __init__(
        self,
        reason: str,
        output: str = "",
        signal_name: str | None = None,
        kind: str = RAISED,
        error: dict | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.output = output
        self.signal_name = signal_name
        self.kind = kind
        error = error or {}
        self.error_type: str | None = error.get("type")
        self.error_types: tuple[str, ...] = tuple(error.get("types") or ())
        self.message: str = error.get("message", "")
        self.child_traceback: str = error.get("traceback", "")
        if self.child_traceback:  # shown where a traceback is printed (--debug), never in the one-line reason
            self.add_note(f"In the isolated process:\n{self.child_traceback.rstrip()}")

    def raised(self, *classes: type[BaseException]) -> bool:
        """True when the child raised an instance of one of ``classes`` (matched by module and qualname)."""
        return any(qualified_name(cls) in self.error_types for cls in classes)


def qualified_name(cls: type) -> str:
    """``module.qualname`` of a class, as the child records it."""
    return f"{cls.__module__}.{cls.__qualname__}"


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
    """Call ``target(**kwargs)`` in a subprocess and return its result; IsolatedFailure if none came back.

    ``launcher`` prefixes the interpreter's command line, e.g. a CPU emulator that runs the call
    on an instruction set this machine lacks.
    """
    with Prestarted(cwd=cwd, env=env, launcher=launcher) as process:
        return process.call(target, kwargs, timeout)


class Prestarted:
    """A fresh Python process started now, importing ``preload`` while the caller goes on; it then
    makes one call and exits. ``send`` hands it the call without waiting, ``result`` waits for the
    answer (``call`` does both). Leaving the ``with`` block, or ``close``, ends it, called or not.

    The point is overlap: a framework's import, or a whole conversion, runs on another core while
    this process works.
    """

    def __init__(self, preload=(), cwd: str | None = None, env: dict | None = None, launcher=None):
        # The child's own folder (in the run's scratch space during a run): its working directory
        # unless ``cwd`` is given, and its temp folder and home, so nothing it writes lands elsewhere.
        self._cleanup = contextlib.ExitStack()
        self.spare = False  # started by start_spare, before anyone asked for it
        tmp = Path(self._cleanup.enter_context(child_folder()))
        self._result, self._log = tmp / "result.json", tmp / "output.log"
        child_env = {**os.environ, **QUIET_ENV, **TELEMETRY_ENV, **child_env_in(tmp), **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [_project_root(), child_env.get("PYTHONPATH")]))
        command = [*(launcher or []), sys.executable, "-m", "ondevice.core.isolate", str(self._result), *preload]
        try:
            # Its output goes to a file: a pipe nobody reads until the call would stall a chatty child.
            with open(self._log, "wb") as log:
                self._proc = subprocess.Popen(
                    command, cwd=cwd or tmp, env=child_env, stdin=subprocess.PIPE, stdout=log, stderr=log
                )
        except BaseException:
            self._cleanup.close()
            raise

    def __enter__(self) -> Prestarted:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the process if it is still running (an unused one waits for its call) and remove its folder."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdin and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._cleanup.close()  # a second close finds nothing left to remove

    def send(self, target: str, kwargs: dict) -> None:
        """Hand the process ``target(**kwargs)``; it starts once its imports are done."""
        request = json.dumps({"target": target, "kwargs": kwargs}) + "\n"
        stdin = self._proc.stdin
        if stdin is None:  # never: Popen was given stdin=PIPE
            return
        try:
            stdin.write(request.encode())
            stdin.close()
        except OSError:  # it already died: ``result`` says how
            pass

    def result(self, timeout: float = 900):
        """The call's JSON result, waited for at most ``timeout`` seconds from now; IsolatedFailure if none
        came back."""
        proc = self._proc
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise IsolatedFailure(f"timed out after {timeout:.0f} s", self._output(), kind=TIMEOUT) from None
        output = self._output()
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise IsolatedFailure(f"process killed by signal {-proc.returncode} ({name})", output, name, SIGNAL)
        if not self._result.exists():
            reason = f"process exited with code {proc.returncode}: {last_line(output)}"
            raise IsolatedFailure(reason, output, kind=EXITED)
        payload = json.loads(self._result.read_text())
        if "error" in payload:
            error = payload["error"]
            raise IsolatedFailure(error["reason"], output, kind=RAISED, error=error)
        return payload["value"]

    def call(self, target: str, kwargs: dict, timeout: float = 900):
        """``send`` then ``result``."""
        self.send(target, kwargs)
        return self.result(timeout)

    def _output(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""


# Processes started before anyone asked for them, by what they import and their environment (see start_spare).
_SPARES: dict[tuple, list[Prestarted]] = {}


def _spare_key(preload, env) -> tuple:
    return tuple(preload), tuple(sorted((env or {}).items()))


def start_spare(preload=(), env: dict | None = None) -> None:
    """Start a Prestarted importing ``preload`` now, for the first ``take_spare`` of the same ``preload`` and
    ``env``: a framework's import under way before the code that needs it has even been reached."""
    process = Prestarted(preload=preload, env=env)
    process.spare = True
    _SPARES.setdefault(_spare_key(preload, env), []).append(process)


def take_spare(preload=(), env: dict | None = None) -> Prestarted | None:
    """The spare ``start_spare`` began with this ``preload`` and ``env``, now the caller's to close; None if none."""
    spares = _SPARES.get(_spare_key(preload, env))
    return spares.pop(0) if spares else None


def close_spares() -> None:
    """End every spare that no one took."""
    while _SPARES:
        for process in _SPARES.popitem()[1]:
            process.close()


def last_line(output: str) -> str:
    """The last meaningful line of a tool's output (its error, usually)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def describe_exception(exc: BaseException) -> dict:
    """What the parent needs of an exception raised in the child: its type and its bases' (to test the type
    by class), its first line, and its traceback with chained causes (shown under --debug)."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    error: dict[str, Any] = {
        "reason": f"{type(exc).__name__}: {message}"[:500],
        "type": qualified_name(type(exc)),
        "types": [qualified_name(cls) for cls in type(exc).__mro__],
        "message": message[:500],
        "traceback": "".join(traceback.format_exception(exc))[-20000:],
    }
    return error


def _main(result_path: str, preload: list[str]) -> None:
    import importlib

    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:  # the call imports what it needs and reports the failure
            continue
    line = sys.stdin.readline()
    if not line:  # the parent ended the process unused
        return
    request = json.loads(line)
    module_name, _, func_name = request["target"].partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        value = func(**request["kwargs"])
        payload = {"value": value}
    except Exception as exc:  # reported to the parent, typed (see IsolatedFailure)
        payload = {"error": describe_exception(exc)}
    Path(result_path).write_text(json.dumps(payload))


if __name__ == "__main__":
    for key, value in {**QUIET_ENV, **TELEMETRY_ENV}.items():
        os.environ.setdefault(key, value)
    telemetry_off()
    _main(sys.argv[1], sys.argv[2:])
    sys.stdout.flush()
    # Skip interpreter teardown: some converters crash in their atexit hooks.
    os._exit(0)
