"""Latency statistics on fixed numbers (timing itself belongs in benchmarks/)."""

from __future__ import annotations

import numpy as np

from ondevice.validators.latency import (
    CHECK_EVERY,
    DEFAULT_RUNS,
    MIN_RUNS,
    PRECISE_WITHIN,
    _precise,
    measure,
    median_ci95,
)


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
    assert result.stopped == "runs"


def test_precise_is_the_ci_of_the_median_within_two_percent():
    rng = np.random.default_rng(1)
    steady = list(10.0 + rng.normal(0, 0.02, size=20))  # CI of the median about +-0.1%
    spread = list(10.0 + rng.normal(0, 1.0, size=20))  # about +-5%
    assert _precise(steady) and not _precise(spread)
    low, high = median_ci95(np.asarray(spread))
    assert max(np.median(spread) - low, high - np.median(spread)) > PRECISE_WITHIN * np.median(spread)


def test_default_runs_stop_between_min_and_default_on_a_rule_the_report_states():
    work = np.random.default_rng(2).random((160, 160))
    result = measure(lambda: work @ work, threads=1)
    assert MIN_RUNS <= result.runs <= DEFAULT_RUNS
    assert result.stopped in ("precise", "runs")
    low, high = result.p50_ci95_ms
    if result.stopped == "precise":  # it stopped at a check, with the CI as narrow as the rule asks
        assert result.runs % CHECK_EVERY == 0 and result.runs < DEFAULT_RUNS
        assert max(result.p50_ms - low, high - result.p50_ms) <= PRECISE_WITHIN * result.p50_ms
    else:  # it ran them all: the CI never got that narrow at a check before the last run
        assert result.runs == DEFAULT_RUNS


def test_a_budget_ends_timing_after_the_minimum_and_says_so():
    result = measure(lambda: sum(range(20000)), threads=1, runs=10_000, budget_s=0.0)
    assert (result.runs, result.stopped) == (MIN_RUNS, "budget")
