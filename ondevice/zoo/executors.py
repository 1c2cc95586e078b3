"""Where the models' jobs run: processes on this machine, or Ray tasks on a cluster (one process per task).

An executor takes tasks (one model's job request each), runs up to ``workers`` at once and calls
``done(outcome)`` as each ends; ``started(name)`` when one starts. Both run the same job under the
same watcher (process.py): on Ray, each task starts the job on its node, watches it there and returns
the outcome with every file the job wrote, which the driver writes into OUT/<model>/.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import first_line
from . import process
from .process import Limits


@dataclass(frozen=True)
class Task:
    """One model's job: the request job.run_model reads, its output folder and working directory."""

    name: str
    request: dict
    out: Path
    cwd: str
    limits: Limits


class LocalExecutor:
    """Each model in its own process group on this machine, ``workers`` at a time."""

    def __init__(self, workers: int, run_folder: Path):
        self.workers, self.run_folder = workers, run_folder

    def run(self, tasks: list, started, done, tick=None) -> None:
        pending, running = list(tasks), dict[str, process.Job]()
        limits = {task.name: task.limits for task in tasks}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    task = pending.pop(0)
                    running[task.name] = process.start(
                        task.name,
                        {**task.request, "out": str(task.out)},
                        self.run_folder / "jobs" / task.name,
                        task.out / "zoo.log",
                        self.run_folder / "timing",
                        task.cwd,
                    )
                    started(task.name)
                rss = process.group_rss_mb()
                for name, job in list(running.items()):
                    outcome = process.poll(job, limits[name], rss)
                    if outcome is not None:
                        del running[name]
                        done(outcome)
                if tick is not None:
                    tick({name: job.elapsed_s for name, job in running.items()})
                time.sleep(process.POLL_S)
        finally:
            for job in running.values():  # Ctrl-C or a fault in the driver: nothing is left running
                process.kill(job)


def run_task(task: Task, run_id: str) -> dict:
    """On a Ray worker: run one model's job on this node and return its outcome and the files it wrote."""
    node = Path(tempfile.gettempdir())
    _driver_threads()
    work = Path(tempfile.mkdtemp(prefix=f"ondevice-zoo-{task.name}-"))
    try:
        out = work / "out"
        job = process.start(
            task.name,
            {**task.request, "out": str(out)},
            work / "job",
            out / "zoo.log",
            node / f"ondevice-zoo-{run_id}",
            task.cwd,
        )
        try:
            while (outcome := process.poll(job, task.limits)) is None:
                time.sleep(process.POLL_S)
        finally:
            if job.proc.poll() is None:
                process.kill(job)
        files = {
            str(p.relative_to(out)): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and ".work" not in p.relative_to(out).parts
        }
        import socket

        # Paths in the verdict name the driver's folder, where these files will be.
        for key in ("verdict", "log_tail"):
            outcome[key] = str(outcome.get(key) or "").replace(str(out), str(task.out))
        return {**outcome, "files": files, "node": socket.gethostname()}
    finally:
        shutil.rmtree(work, ignore_errors=True)


_OMP = "ONDEVICE_ZOO_OMP_NUM_THREADS"


def _driver_threads() -> None:
    """Ray sets OMP_NUM_THREADS to a task's CPUs (1): the job must time with the threads it would use locally."""
    import os

    if _OMP in os.environ:
        value = os.environ.pop(_OMP)
        if value:
            os.environ["OMP_NUM_THREADS"] = value
        else:
            os.environ.pop("OMP_NUM_THREADS", None)


class RayExecutor:
    """Each model as a Ray task (a fresh worker process per task, ``max_calls=1``) on a local or existing cluster."""

    def __init__(self, workers: int, run_id: str, address: str | None, local_cpus: int | None):
        self.workers, self.run_id = workers, run_id
        self.address, self.local_cpus = address, local_cpus
        self.session: str | None = None  # a private instance's folder (logs, sockets), removed at the end

    def run(self, tasks: list, started, done, tick=None) -> None:
        from ..core.lazy import require

        ray = require("ray")
        self._connect(ray)
        try:
            self._drive(
                ray, ray.remote(max_calls=1, num_cpus=1, max_retries=0)(run_task), list(tasks), started, done, tick
            )
        finally:
            ray.shutdown()
            # The tasks' timing folder on this node (other nodes keep theirs: a lock file, in their temp folder).
            shutil.rmtree(Path(tempfile.gettempdir()) / f"ondevice-zoo-{self.run_id}", ignore_errors=True)
            if self.session:
                shutil.rmtree(self.session, ignore_errors=True)

    def _connect(self, ray) -> None:
        import logging
        import os

        from ..core.lazy import QUIET_ENV, TELEMETRY_ENV

        root = str(Path(__file__).resolve().parent.parent.parent)
        env = {"PYTHONPATH": root, **QUIET_ENV, **TELEMETRY_ENV, _OMP: os.environ.get("OMP_NUM_THREADS", "")}
        quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "runtime_env": {"env_vars": env}}
        if self.address:
            ray.init(address=self.address, **quiet)
        else:
            # A private single-node cluster on the loopback interface, gone when the run ends. Its session
            # folder is short (socket paths are limited to 107 bytes) and removed with it.
            self.session = tempfile.mkdtemp(prefix="ondevice-ray-")
            ray.init(
                num_cpus=self.local_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                _temp_dir=self.session,
                **quiet,
            )

    def _drive(self, ray, remote, pending: list, started, done, tick) -> None:
        running: dict = {}
        since: dict[str, float] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    task = pending.pop(0)
                    # A memory request where the model has a cap: Ray places it on a node with that much free.
                    memory = {"memory": int(task.limits.memory_mb * 2**20)} if task.limits.memory_mb else {}
                    running[remote.options(name=f"ondevice-zoo:{task.name}", **memory).remote(task, self.run_id)] = task
                    since[task.name] = time.monotonic()
                    started(task.name)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=process.POLL_S * 4)
                for ref in ready:
                    task = running.pop(ref)
                    done(_collect(ray, ref, task, time.monotonic() - since[task.name]))
                if tick is not None:
                    tick({t.name: time.monotonic() - since[t.name] for t in running.values()})
        finally:
            for ref in running:
                ray.cancel(ref, force=True)


def _collect(ray, ref, task: Task, seconds: float) -> dict:
    """The task's outcome, its files written into OUT/<model>/ on the driver."""
    try:
        outcome = ray.get(ref)
    except Exception as exc:  # the task's worker died: Ray says why (the job's own faults are outcomes)
        reason = first_line(exc)
        return {
            "name": task.name,
            "state": "crashed",
            "exit_code": 4,
            "seconds": round(seconds, 3),
            "verdict": f"FAILED (the Ray task ended without an outcome: {type(exc).__name__}: {reason[:300]})",
        }
    for relative, data in outcome.pop("files").items():
        path = task.out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return outcome
