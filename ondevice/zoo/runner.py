"""A zoo run: schedule the models' jobs, keep the resumable status file, show progress, write the scorecard.

``OUT/zoo-status.json`` records every model's state and outcome; it is rewritten atomically (a rename)
whenever a model starts or ends, so a run stopped at any point (Ctrl-C, a killed CI job) leaves a
file ``--resume`` can trust: models that ended with the same source and options are not run again,
the others are. Each model writes OUT/<model>/ (its check's files and zoo.log); the run's own
scratch (OUT/.zoo: job requests, the timing lock) is removed at the end.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..core.lazy import REPORTED_PACKAGES
from .process import Limits

STATUS = "zoo-status.json"
STATUS_VERSION = 1
RUN_FOLDER = ".zoo"
UNFINISHED = ("pending", "running", "interrupted")


@dataclass(frozen=True)
class ZooOptions:
    """How a zoo runs, built once by the CLI."""

    out: Path
    workers: int = 1
    resume: bool = False
    executor: str = "local"
    address: str | None = None
    baseline: str | None = None
    limits: Limits = field(default_factory=Limits)
    cache_dir: Path | None = None
    quiet: bool = False
    keep_work: bool = False
    trust_cache: bool = False  # reuse a cache entry's validated report instead of validating again


class Interrupted(Exception):
    """Ctrl-C during a zoo run; the status file says what finished."""

    def __init__(self, finished: int, total: int, status: Path):
        super().__init__(
            f"interrupted: {finished} of {total} models finished; run the same command with --resume "
            f"to finish the rest ({status})"
        )


def run_zoo(zoo, base_options: dict, opts: ZooOptions) -> tuple[dict, Path]:
    """Run every model of ``zoo`` (``base_options``: check's options where a model and the defaults are
    silent); returns the scorecard and its path."""
    from .._paths import clear_previous, output_folder
    from . import scorecard

    out = output_folder(opts.out).resolve()
    baseline = scorecard.load(opts.baseline) if opts.baseline else None
    policies = _policies(zoo, base_options)
    clear_previous(out, scorecard.FILES)  # a stopped run must not leave the last run's PASSED behind
    status = Status(out / STATUS, zoo, opts)
    tasks, outcomes = _plan(zoo, base_options, opts, status, out)
    began = time.monotonic()
    run_folder = out / RUN_FOLDER
    shutil.rmtree(run_folder, ignore_errors=True)
    display = _Progress(len(zoo.models), len(tasks), opts.quiet, opts.workers)

    def started(name: str) -> None:
        status.set(name, state="running")
        display.started(name)

    def done(outcome: dict) -> None:
        status.finish(outcome)
        outcomes[outcome["name"]] = outcome
        display.done(outcome)

    try:
        with _terminate_as_interrupt():
            if tasks:  # a resumed run with nothing left starts no executor (no Ray instance)
                _executor(opts, run_folder).run(tasks, started, done, display.tick)
    except KeyboardInterrupt:
        status.interrupt()
        display.close()
        raise Interrupted(status.finished(), len(zoo.models), status.path) from None
    finally:
        if not opts.keep_work:
            shutil.rmtree(run_folder, ignore_errors=True)
    display.close()
    entries = [scorecard.model_entry(m.name, m.source, outcomes[m.name], out) for m in zoo.models]
    run = {"executor": opts.executor, "workers": opts.workers, "wall_s": round(time.monotonic() - began, 3)}
    card = scorecard.build(str(zoo.path), entries, run, _environment(), baseline, policies)
    if opts.baseline:
        card["baseline"]["path"] = str(opts.baseline)
    return card, scorecard.write(card, out)


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a cancelled CI job) ends the run like Ctrl-C: jobs killed, the status file says so."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def full_options(model, base_options: dict) -> dict:
    """The check options one model runs with: its own, over the defaults', over the command line's."""
    return {**base_options, **model.options}


def _plan(zoo, base_options: dict, opts: ZooOptions, status: Status, out: Path) -> tuple[list, dict]:
    """The tasks to run, and the outcomes of models a resumed run keeps."""
    from .executors import Task

    tasks, kept = [], {}
    for model in zoo.models:
        options = full_options(model, base_options)
        digest = _digest(model.source, options)
        previous = status.previous(model.name, digest) if opts.resume else None
        if previous is not None:
            kept[model.name] = {**previous, "name": model.name, "resumed": True}
            continue
        status.set(model.name, state="pending", digest=digest)
        request = {
            "name": model.name,
            "source": model.source,
            "options": options,
            "cache": str(opts.cache_dir) if opts.cache_dir else None,
            "trust_cache": opts.trust_cache,
        }
        limits = Limits(model.timeout_s or opts.limits.timeout_s, model.memory_mb or opts.limits.memory_mb)
        tasks.append(Task(model.name, request, out / model.name, str(zoo.path.resolve().parent), limits))
    status.write()
    return tasks, kept


def _digest(source: str, options: dict) -> str:
    import hashlib

    text = json.dumps({"source": source, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _executor(opts: ZooOptions, run_folder: Path):
    from .executors import LocalExecutor, RayExecutor

    if opts.executor == "ray":
        return RayExecutor(opts.workers, uuid.uuid4().hex[:12], opts.address, None if opts.address else opts.workers)
    return LocalExecutor(opts.workers, run_folder)


def _policies(zoo, base_options: dict) -> dict:
    """Each model's gate policy (its [regression] thresholds judge the baseline view), read before any work."""
    from ..gate import load_policy

    found = {}
    for model in zoo.models:
        path = full_options(model, base_options).get("policy")
        if path:
            found[model.name] = load_policy(path)
    return found


def _environment() -> dict:
    import platform
    import sys

    from ..core.lazy import package_versions
    from ..cpu import cpu_info

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "packages": package_versions(*_PACKAGES),
    }


_PACKAGES = (*REPORTED_PACKAGES, "ray")


class Status:
    """OUT/zoo-status.json: each model's state, the digest of what it ran and its outcome."""

    def __init__(self, path: Path, zoo, opts: ZooOptions):
        self.path = path
        old = self._read() if opts.resume else {}
        self.models: dict[str, dict] = {}
        self.old = old.get("models", {}) if isinstance(old.get("models"), dict) else {}
        self.head = {
            "schema_version": STATUS_VERSION,
            "zoo": str(zoo.path),
            "executor": opts.executor,
            "workers": opts.workers,
        }

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("schema_version") == STATUS_VERSION else {}

    def previous(self, name: str, digest: str) -> dict | None:
        """A model's recorded outcome if it finished with this digest (then it is not run again)."""
        entry = self.old.get(name)
        if not isinstance(entry, dict) or entry.get("digest") != digest or entry.get("state") in UNFINISHED:
            return None
        if not isinstance(entry.get("exit_code"), int):
            return None
        self.models[name] = entry
        return entry

    def set(self, name: str, **fields) -> None:
        self.models[name] = {**self.models.get(name, {}), **fields}
        if fields.get("state") == "running":
            self.write()

    def finish(self, outcome: dict) -> None:
        entry = {k: v for k, v in outcome.items() if k not in ("files", "log_tail")}
        self.models[outcome["name"]] = {
            **self.models.get(outcome["name"], {}),
            **entry,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.write()

    def interrupt(self) -> None:
        for entry in self.models.values():
            if entry.get("state") == "running":
                entry["state"] = "interrupted"
        self.write()

    def finished(self) -> int:
        return sum(1 for e in self.models.values() if e.get("state") not in UNFINISHED)

    def write(self) -> None:
        from .._paths import write_text_atomic

        write_text_atomic(self.path, json.dumps({**self.head, "models": self.models}, indent=2) + "\n")


class _Progress:
    """Models done / running / failed and the time left, on stderr: a live line on a terminal, else events."""

    def __init__(self, total: int, to_run: int, quiet: bool, workers: int):
        import sys

        self.total, self.to_run, self.quiet, self.workers = total, to_run, quiet, workers
        self.start = time.monotonic()
        self.done_count = total - to_run
        self.failed = 0
        self.durations: list[float] = []
        self.running: dict[str, float] = {}
        self.live = not quiet and sys.stderr.isatty()
        self.last_line = self.start
        if not quiet and total > to_run:
            self._print(f"resuming: {total - to_run} of {total} models already finished")

    def started(self, name: str) -> None:
        self.running[name] = 0.0
        if not self.live:
            self._print(f"{name}: started ({self._summary()})")

    def done(self, outcome: dict) -> None:
        self.running.pop(outcome["name"], None)
        self.done_count += 1
        self.failed += outcome["exit_code"] != 0
        self.durations.append(outcome.get("seconds") or 0.0)
        self._print(f"{outcome['name']}: {outcome['state']} in {outcome.get('seconds', 0):.1f} s ({self._summary()})")

    def tick(self, running: dict) -> None:
        self.running = dict(running)
        now = time.monotonic()
        if self.live and now - self.last_line >= 0.5:
            self.last_line = now
            self._write("\r\x1b[K" + self._line()[:160])
        elif not self.live and not self.quiet and now - self.last_line >= 30:
            self.last_line = now
            self._print(self._summary())

    def _summary(self) -> str:
        left = self.total - self.done_count - len(self.running)
        parts = [
            f"{self.done_count}/{self.total} done",
            f"{self.failed} failed",
            f"{len(self.running)} running",
            f"{left} waiting",
            f"{time.monotonic() - self.start:.0f} s elapsed",
        ]
        remaining = self._remaining()
        parts.append(f"~{remaining:.0f} s left" if remaining is not None else "time left unknown")
        return ", ".join(parts)

    def _remaining(self) -> float | None:
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        waiting = self.total - self.done_count - len(self.running)
        in_flight = sum(max(0.0, mean - s) for s in self.running.values())
        return (in_flight + waiting * mean) / max(1, self.workers)

    def _line(self) -> str:
        names = ", ".join(f"{n} {s:.0f}s" for n, s in sorted(self.running.items()))
        return f"[zoo {time.monotonic() - self.start:6.1f}s] {self._summary()}" + (f" | {names}" if names else "")

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        prefix = "\r\x1b[K" if self.live else ""
        self._write(f"{prefix}[zoo {time.monotonic() - self.start:6.1f}s] {text}\n")

    def _write(self, text: str) -> None:
        import sys

        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.live:
            self._write("\r\x1b[K")
