"""Latency: warm up, then time single inferences and summarise them with percentiles."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

DEFAULT_WARMUP = 5
DEFAULT_RUNS = 50


@dataclass(frozen=True)
class LatencyResult:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    warmup: int
    threads: int
    first_ms: float

    def to_json(self) -> dict:
        return asdict(self)


def measure(run: Callable[[], object], threads: int, runs: int = DEFAULT_RUNS,
            warmup: int = DEFAULT_WARMUP) -> LatencyResult:
    """Time ``run()``; the first call (often a compile or allocation) is recorded apart."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        run()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        run()
        times[i] = time.perf_counter() - start
    ms = times * 1e3
    return LatencyResult(float(np.percentile(ms, 50)), float(np.percentile(ms, 90)), float(np.percentile(ms, 99)),
                         float(ms.mean()), float(ms.std()), runs, warmup, threads, first * 1e3)
