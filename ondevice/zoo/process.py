"""One model's job process, watched: a timeout, a memory cap, and an outcome whatever happens to it.

The job (``python -m ondevice.zoo.job``) runs in a process group of its own, so its converters and
runtime workers can be stopped while another model is timed (``timing``) and killed with it. The
memory cap is a watchdog on the resident memory summed over that group, sampled every poll: an
address-space limit (RLIMIT_AS) cannot be used, since TensorFlow reserves several times its resident
memory in address space and crashes (SIGSEGV) under a limit its real use stays far below
(docs/zoo.md). The timeout counts the time the job ran, not the time it was stopped for another
model's timing. Stdlib and the core's vocabulary only: both executors (local processes, Ray tasks) use it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from .. import timing
from ..core.vocab import ExitCode, Status

POLL_S = 0.25
# A model's state in the zoo's table, from its job's exit code; bad input is a state of the run, not a
# target's status, so it has no Status member.
STATE_OF_EXIT: dict[int, str] = {
    ExitCode.PASSED: Status.PASSED,
    ExitCode.CHECK_FAILED: Status.FAILED,
    ExitCode.BAD_INPUT: "bad_input",
    ExitCode.NOT_CONVERTIBLE: Status.CONVERSION_ERROR,
    ExitCode.INTERNAL: Status.ERROR,
}


@dataclass(frozen=True)
class Limits:
    """Per-model limits: seconds of running time and MiB of resident memory (None: no limit)."""

    timeout_s: float | None = None
    memory_mb: float | None = None


@dataclass
class Job:
    """A started job process and what its watcher has seen of it."""

    name: str
    proc: subprocess.Popen
    folder: Path  # holds request.json and result.json
    log: Path
    timing_folder: Path
    started: float = field(default_factory=time.monotonic)
    active_s: float = 0.0
    last_poll: float = field(default_factory=time.monotonic)
    peak_rss_mb: float = 0.0
    keep_work: bool = False

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


def start(name: str, request: dict, folder: Path, log: Path, timing_folder: Path, cwd: str | None = None) -> Job:
    """Start the job for one model; ``request`` as job.run_model reads it (its result path is set here)."""
    from ..core.lazy import QUIET_ENV, TELEMETRY_ENV

    folder.mkdir(parents=True, exist_ok=True)
    request = {**request, "result": str(folder / "result.json")}
    (folder / "result.json").unlink(missing_ok=True)
    (folder / "request.json").write_text(json.dumps(request))
    root = str(Path(__file__).resolve().parent.parent.parent)
    env = {**os.environ, **QUIET_ENV, **TELEMETRY_ENV, timing.ENV: str(timing_folder)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ondevice.zoo.job", str(folder / "request.json")],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            process_group=0,
        )
    timing.register(timing_folder, proc.pid)
    return Job(name, proc, folder, log, timing_folder, keep_work=bool(request["options"].get("keep_work")))


def poll(job: Job, limits: Limits, rss: dict | None = None) -> dict | None:
    """None while the job runs within its limits; its outcome once it ended or was stopped for a limit.

    ``rss`` maps process groups to resident MiB (``group_rss_mb()``, shared by the jobs of one poll).
    """
    now = time.monotonic()
    if not timing.is_paused(job.proc.pid):
        job.active_s += now - job.last_poll
    job.last_poll = now
    used = (rss if rss is not None else group_rss_mb()).get(job.proc.pid, 0.0)
    job.peak_rss_mb = max(job.peak_rss_mb, used)
    code = job.proc.poll()
    if code is not None:
        return _ended(job, code)
    if limits.memory_mb is not None and used > limits.memory_mb:
        return _stopped(
            job,
            "memory",
            f"used {used:.0f} MiB of resident memory, over the cap of "
            f"{limits.memory_mb:.0f} MiB (--memory-per-model): stopped",
        )
    if limits.timeout_s is not None and job.active_s > limits.timeout_s:
        return _stopped(
            job,
            "timeout",
            f"timed out after {limits.timeout_s:g} s (--timeout-per-model): stopped; "
            "find what hangs or raise the timeout",
        )
    return None


def kill(job: Job) -> None:
    """Kill the job's whole process group and let any model it held stopped continue."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(job.proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        job.proc.wait(timeout=30)
    _forget(job)


def _forget(job: Job) -> None:
    timing.unregister(job.timing_folder, job.proc.pid)
    timing.resume_all(job.timing_folder)


def _scrap(job: Job) -> None:
    """A job that died cannot clear its scratch folder (OUT/<model>/.work): its watcher does."""
    if not job.keep_work:
        shutil.rmtree(job.log.parent / ".work", ignore_errors=True)


def _stopped(job: Job, state: str, why: str) -> dict:
    kill(job)
    _scrap(job)
    return _outcome(job, state, ExitCode.INTERNAL, f"FAILED ({why})")


def _ended(job: Job, code: int) -> dict:
    # The group may hold what the job left behind (a hung converter whose parent crashed).
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(job.proc.pid, signal.SIGKILL)
    _forget(job)
    try:
        result = json.loads((job.folder / "result.json").read_text())
    except (OSError, ValueError):
        result = None
    if isinstance(result, dict) and isinstance(result.get("exit_code"), int):
        state = STATE_OF_EXIT.get(result["exit_code"], "error")
        return {
            **_outcome(job, state, result["exit_code"], str(result.get("verdict"))),
            "cache": result.get("cache"),
            "job_seconds": result.get("seconds"),
        }
    how = _how(code)
    _scrap(job)
    return _outcome(
        job,
        "crashed",
        ExitCode.INTERNAL,
        f"FAILED (the model's process ended without a verdict ({how}); user code "
        f"such as its factory may have crashed or exited: nothing was checked; "
        f"log: {job.log})",
    )


def _outcome(job: Job, state: str, code: int, verdict: str) -> dict:
    return {
        "name": job.name,
        "state": state,
        "exit_code": code,
        "verdict": verdict,
        "seconds": round(job.elapsed_s, 3),
        "active_seconds": round(job.active_s, 3),
        "peak_rss_mb": round(job.peak_rss_mb, 1),
        "log_tail": log_tail(job.log),
    }


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = 12) -> str:
    """The last lines of a job's log, for a verdict that needs its context."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def group_rss_mb() -> dict:
    """Resident MiB per process group, summed over its processes (one pass over /proc)."""
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    totals: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            rss_pages = int(Path(f"/proc/{name}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        group = int(fields[2])
        totals[group] = totals.get(group, 0.0) + rss_pages * page_mb
    return totals
