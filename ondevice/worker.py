"""Run one artifact in its own process: load it, run every sample, time it, measure its memory.

The parent (pipeline.validate_artifacts) hands over samples in an .npz and gets outputs back
in another, so a runtime that crashes or hangs takes down only its own worker.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

from .core.samples import load_samples_file, save_samples

# Fault injection for tests of crash/hang containment: "RUNTIME:crash" or "RUNTIME:hang" (validation's
# worker), "RUNTIME:emulated-crash" or "RUNTIME:emulated-hang" (the emulated int8 check's worker only),
# "RUNTIME:crash-at-load" (the export's check of a quantized artifact, ``smoke``).
FAULT_ENV = "ONDEVICE_INJECT_FAULT"


def _rss_mb() -> float:
    # ru_maxrss is the peak resident set of this process, in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inject_fault(runtime: str, emulated: bool = False) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    target, _, kind = spec.partition(":")
    if target != runtime or kind.startswith("emulated-") != emulated:
        return
    kind = kind.removeprefix("emulated-")
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        time.sleep(10**6)


def smoke(path: str, target: str, threads: int = 1) -> dict:
    """Load a fresh artifact and run it once on zeros of its own inputs; its input names if the runtime survives.

    The exporter calls this in a child process before it loads a quantized artifact itself: a runtime that
    crashes on such a file (LiteRT allocating an int8 GPT-2) then fails one attempt, not the whole run.
    """
    import numpy as np

    from .artifacts import runtime_for
    from .runtimes import get_runner_class

    runtime = runtime_for(target)
    if os.environ.get(FAULT_ENV) == f"{runtime}:crash-at-load":
        os.kill(os.getpid(), signal.SIGSEGV)
    runner = get_runner_class(runtime)(path, threads=threads)
    feeds = {
        spec.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in spec.shape], spec.dtype)
        for spec in runner.inputs
    }
    runner.run(feeds)
    return {"inputs": sorted(feeds)}


def run_artifact(
    out_dir: str, indices: list, samples_path: str, outputs_paths: list, threads: int, limits: list | None = None
) -> dict:
    """Load the artifacts at ``indices`` one after another and run the samples only (no timing): parity on an
    emulated CPU. ``limits``: per index, how many of the samples to run (None: all). Returns the runtime
    that ran each, in the order of ``indices``."""
    from .artifacts import ArtifactRunner, Artifacts

    items = Artifacts.load(out_dir, verify=False).items
    samples = load_samples_file(Path(samples_path))
    runtimes = []
    for index, outputs_path, limit in zip(indices, outputs_paths, limits or [None] * len(indices), strict=True):
        runner = ArtifactRunner(items[index], threads)
        _inject_fault(runner.runtime, emulated=True)
        save_samples(Path(outputs_path), [runner.run(s) for s in samples[:limit]])
        runtimes.append(runner.runtime)
        del runner  # one loaded model at a time: the run may hold the largest artifacts of a model zoo
    return {"runtimes": runtimes}


def measure_artifact(
    out_dir: str,
    index: int,
    samples_path: str,
    outputs_path: str,
    timing: dict,
    extra: dict | None = None,
    external: bool = False,
) -> dict:
    """Load artifact ``index`` of the manifest in ``out_dir``, run and time it; returns JSON-able facts.

    ``timing``: threads, runs, warmup, budget_s (seconds, None: every run) and, optionally, runtime
    (None: the target's own). ``extra``: samples_path and outputs_path of samples at another shape
    (dynamic axes), run and saved but not timed. ``external``: the manifest is the one this run wrote
    for files made elsewhere. Every argument is JSON: this runs in a process of its own.
    """
    from ondevice.validators import latency

    from .artifacts import ArtifactRunner, Artifacts
    from .timing import alone

    threads = timing["threads"]
    artifact = Artifacts.load(out_dir, verify=False, external_ok=external).items[index]
    baseline = _rss_mb()
    start = time.perf_counter()
    runner = ArtifactRunner(artifact, threads, timing.get("runtime"))
    load_ms = (time.perf_counter() - start) * 1e3
    after_load = _rss_mb()
    _inject_fault(runner.runtime)
    samples = load_samples_file(Path(samples_path))
    start = time.perf_counter()
    outputs = [runner.run(s) for s in samples]
    save_samples(Path(outputs_path), outputs)
    if extra:
        other = [runner.run(s) for s in load_samples_file(Path(extra["samples_path"]))]
        save_samples(Path(extra["outputs_path"]), other)
    parity_s = time.perf_counter() - start
    feeds = runner.feeds(samples[0])
    start = time.perf_counter()
    with alone():  # in a zoo run, every other model is stopped while this one is timed
        timed = latency.measure(
            runner.runner.timed_call(feeds),
            threads,
            runs=timing["runs"],
            warmup=timing["warmup"],
            budget_s=timing.get("budget_s"),
        ).to_json()
    timed["load_ms"] = load_ms
    stages = {"load": load_ms / 1e3, "parity_run": parity_s, "latency": time.perf_counter() - start}
    return {
        "runtime": runner.runtime,
        "latency": timed,
        "stages": stages,
        "footprint": {"baseline_rss_mb": baseline, "peak_rss_load_mb": after_load, "peak_rss_run_mb": _rss_mb()},
    }
