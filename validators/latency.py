"""Latency: warm up until stable, time single inferences, summarise with percentiles and a CI.

Warmup runs in rounds of 5 (at least one round) until a round's median is within 10% of the
previous round's, at most 10 rounds: first calls often compile, allocate or fill caches. Then
``runs`` timed calls, or fewer when ``budget_s`` runs out (never fewer than MIN_RUNS). With ``runs``
None (the default), timing stops as soon as the p50 is known: from MIN_RUNS on, every CHECK_EVERY
calls, once the 95% CI of the median lies within PRECISE_WITHIN of it, and at DEFAULT_RUNS at the most.
``stopped`` records which of these ended it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_RUNS = 50
MIN_RUNS = 20
PRECISE_WITHIN = 0.02  # of the p50: the CI half-width where adaptive timing stops (the gate's default is 10%)
CHECK_EVERY = 5
WARMUP_ROUND = 5
WARMUP_MAX_ROUNDS = 10
STABLE_WITHIN = 0.10
BOOTSTRAP_RESAMPLES = 2000


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
    p50_ci95_ms: tuple[Any, ...]
    stopped: str = "runs"  # "runs": every run asked for; "precise": the CI was narrow enough; "budget"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["p50_ci95_ms"] = list(self.p50_ci95_ms)
        return data


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def warm_up(run: Callable[[], object], min_runs: int = WARMUP_ROUND) -> int:
    """Call ``run`` until its median settles; returns how many warmup calls were made."""
    rounds = max(1, -(-min_runs // WARMUP_ROUND))
    previous = None
    done = 0
    for index in range(WARMUP_MAX_ROUNDS):
        median = float(np.median([_timed(run) for _ in range(WARMUP_ROUND)]))
        done += WARMUP_ROUND
        settled = previous is not None and abs(median - previous) <= STABLE_WITHIN * previous
        if index + 1 >= rounds and settled:
            break
        previous = median
    return done


def median_ci95(samples_ms: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% confidence interval of the median."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples_ms), size=(BOOTSTRAP_RESAMPLES, len(samples_ms)))
    medians = np.median(samples_ms[picks], axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def _precise(times: list[float]) -> bool:
    """Whether the 95% CI of the median of ``times`` lies within PRECISE_WITHIN of the median."""
    samples = np.asarray(times)
    median = float(np.median(samples))
    low, high = median_ci95(samples)
    return max(median - low, high - median) <= PRECISE_WITHIN * median


def measure(
    run: Callable[[], object],
    threads: int,
    runs: int | None = None,
    warmup: int = WARMUP_ROUND,
    budget_s: float | None = None,
) -> LatencyResult:
    """Time ``run()`` (``runs`` None: until the p50 is known, see the module); the first call is recorded
    apart as ``first_ms``."""
    first = _timed(run)
    warmed = 1 + warm_up(run, warmup)
    times: list[float] = []
    limit, stopped = runs or DEFAULT_RUNS, "runs"
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    while len(times) < limit:
        times.append(_timed(run))
        done = len(times)
        if deadline is not None and done >= min(MIN_RUNS, limit) and time.perf_counter() > deadline:
            stopped = "budget"
            break
        if runs is None and done >= MIN_RUNS and done % CHECK_EVERY == 0 and done < limit and _precise(times):
            stopped = "precise"
            break
    ms = np.asarray(times) * 1e3
    return LatencyResult(
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        float(ms.mean()),
        float(ms.std()),
        len(ms),
        warmed,
        threads,
        first * 1e3,
        median_ci95(ms),
        stopped,
    )
