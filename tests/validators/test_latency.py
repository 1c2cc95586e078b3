"""Latency statistics on fixed numbers (timing itself belongs in benchmarks/)."""

from __future__ import annotations

import numpy as np

from ondevice.validators.latency import measure, median_ci95


def test_median_ci_brackets_the_median_and_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    few = rng.normal(10, 1, size=20)
    many = rng.normal(10, 1, size=400)
    lo_few, hi_few = median_ci95(few)
    lo_many, hi_many = median_ci95(many)
    assert lo_few <= np.median(few) <= hi_few
    assert lo_many <= np.median(many) <= hi_many
    assert (hi_many - lo_many) < (hi_few - lo_few)
    assert median_ci95(np.full(30, 5.0)) == (5.0, 5.0)


def test_measure_counts_runs_and_warmup():
    calls = []
    result = measure(lambda: calls.append(1), threads=3, runs=25, warmup=5)
    assert result.runs == 25 and result.threads == 3
    assert result.warmup >= 6  # the first call plus at least one round of 5
    assert len(calls) == result.runs + result.warmup
    assert result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.p50_ci95_ms[0] <= result.p50_ms <= result.p50_ci95_ms[1]
