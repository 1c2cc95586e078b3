"""Latency measured alone: while one model of a zoo run is timed, every other model's processes are stopped.

A zoo run checks several models at once, each in a process group of its own. Timing one while
another converts would measure the contention, not the model. Every timing section (the source
model's in pipeline.validate_artifacts and each artifact's in worker.measure_artifact) runs inside
``alone()``: when the environment names a run folder (``ENV``), it takes the run's timing lock (one
timing at a time), stops (SIGSTOP) the process group of every other model registered in that folder,
waits until they are stopped, times, and continues them (SIGCONT). Outside a zoo run it does nothing.
Stdlib only: this module is imported by every validation.
"""

from __future__ import annotations

import fcntl
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

ENV = "ONDEVICE_ZOO_TIMING"
LOCK = "timing.lock"
JOBS = "jobs"
_STOP_WAIT_S = 1.0


@contextmanager
def alone():
    """Run the block (a latency measurement) with every other model of the zoo run stopped."""
    folder = os.environ.get(ENV)
    if not folder:
        yield
        return
    with _locked(Path(folder), blocking=True):
        stopped = _signal_others(Path(folder), signal.SIGSTOP)
        try:
            _wait_stopped(stopped)
            yield
        finally:
            for group in stopped:
                _signal_group(group, signal.SIGCONT)


def register(folder, pid: int) -> None:
    """Record the process group led by ``pid`` (a model's job) as one to stop while others are timed."""
    jobs = Path(folder) / JOBS
    jobs.mkdir(parents=True, exist_ok=True)
    started = _start_time(pid)
    if started is not None:
        (jobs / str(pid)).write_text(str(started))


def unregister(folder, pid: int) -> None:
    """Forget a model's process group (it ended)."""
    (Path(folder) / JOBS / str(pid)).unlink(missing_ok=True)


def resume_all(folder) -> None:
    """Continue every registered group unless a timing is under way: a timer killed while it held the
    others stopped (timeout, memory cap) must not leave them stopped."""
    with _locked(Path(folder), blocking=False) as held:
        if held:
            for group in _registered(Path(folder)):
                _signal_group(group, signal.SIGCONT)


def is_paused(pid: int) -> bool:
    """True while process ``pid`` is stopped (another model is being timed): its timeout does not run."""
    state = _stat(pid)
    return state is not None and state[0] in "Tt"


@contextmanager
def _locked(folder: Path, blocking: bool):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _registered(folder: Path) -> list[int]:
    """Registered groups whose leader is still the process that was registered (pids are reused)."""
    groups: list[int] = []
    try:
        entries = list((folder / JOBS).iterdir())
    except OSError:
        return groups
    for entry in entries:
        try:
            pid, started = int(entry.name), int(entry.read_text())
        except (OSError, ValueError):
            continue
        if _start_time(pid) == started:
            groups.append(pid)
    return groups


def _signal_others(folder: Path, sig) -> list[int]:
    own = os.getpgrp()
    return [group for group in _registered(folder) if group != own and _signal_group(group, sig)]


def _signal_group(group: int, sig) -> bool:
    try:
        os.killpg(group, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _wait_stopped(groups: list[int]) -> None:
    """SIGSTOP is asynchronous: wait (briefly) until every process of those groups has stopped."""
    if not groups:
        return
    deadline = time.monotonic() + _STOP_WAIT_S
    wanted = set(groups)
    while time.monotonic() < deadline:
        running = [pid for pid, (state, pgid) in _processes().items() if pgid in wanted and state not in "TtZX"]
        if not running:
            return
        time.sleep(0.005)


def _processes() -> dict:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                found[int(name)] = (stat[0], int(stat[2]))
    return found


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return int(stat[19]) if stat is not None and len(stat) > 19 else None
