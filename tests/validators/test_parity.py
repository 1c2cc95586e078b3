"""Parity metrics and verdicts on hand-made arrays (no frameworks involved)."""

from __future__ import annotations

import numpy as np
import pytest

from ondevice.validators.parity import NOISE_CAP, NOISE_FACTOR, Tolerance, compare, nudged, source_noise

RNG = np.random.default_rng(0)


def _samples(n=4, shape=(2, 5)):
    return [{"y": RNG.normal(size=shape).astype(np.float32)} for _ in range(n)]


def test_identical_outputs_pass_with_exact_metrics():
    ref = _samples()
    result = compare(ref, ref, Tolerance.default())
    out = result.outputs[0]
    assert result and out.passed
    assert out.max_abs_err == 0 and out.mean_abs_err == 0
    assert out.cosine == pytest.approx(1.0)
    assert out.snr_db > 300
    peak = max(float(np.abs(r["y"]).max()) for r in ref)
    assert out.peak == pytest.approx(peak) and peak > 1
    assert (out.atol, out.rtol) == (pytest.approx(1e-4 * peak), 1e-3)


def test_fp32_atol_follows_the_output_scale_beyond_one():
    """fp32 atol is 1e-4 of the output's peak, at least 1e-4: logits in [-30, 30] may differ by a few
    1e-4 from summation order; the same absolute error on an output within [-1, 1] is drift."""
    logits = [{"y": np.array([[30.0, -0.16, 12.0, -25.0]], np.float32)}]
    rounding = [{"y": logits[0]["y"] + np.array([[0, 7.9e-4, 0, 0]], np.float32)}]
    judged = compare(logits, rounding, Tolerance.default())
    assert judged.passed and judged.outputs[0].atol == pytest.approx(3e-3)
    small = [{"y": logits[0]["y"] / 30}]
    drift = [{"y": small[0]["y"] + np.array([[0, 7.9e-4, 0, 0]], np.float32)}]
    failed = compare(small, drift, Tolerance.default())
    assert not failed.passed and failed.outputs[0].atol == pytest.approx(1e-4)
    # A real drift on the large output still fails: 1e-2 of its range.
    assert not compare(logits, [{"y": logits[0]["y"] + 0.3}], Tolerance.default()).passed


def test_small_noise_passes_and_large_noise_fails():
    ref = _samples()
    near = [{"y": r["y"] + 1e-6} for r in ref]
    far = [{"y": r["y"] + 1e-2} for r in ref]
    assert compare(ref, near, Tolerance.default()).passed
    bad = compare(ref, far, Tolerance.default())
    assert not bad.passed
    assert bad.outputs[0].max_abs_err == pytest.approx(1e-2, rel=1e-3)
    assert "exceeds atol" in bad.outputs[0].problem


def test_one_bad_element_in_one_sample_fails():
    ref = _samples()
    act = [{"y": r["y"].copy()} for r in ref]
    act[3]["y"][1, 2] += 0.5
    result = compare(ref, act, Tolerance.default())
    assert not result.passed
    assert "1 of 40 elements" in result.outputs[0].problem


def test_nan_in_artifact_fails():
    ref = _samples()
    act = [{"y": r["y"].copy()} for r in ref]
    act[0]["y"][0, 0] = np.nan
    result = compare(ref, act, Tolerance.default())
    assert not result.passed and "NaN" in result.outputs[0].problem
    assert np.isfinite(result.outputs[0].max_abs_err)  # JSON-safe


def test_shape_mismatch_and_missing_output_fail():
    ref = _samples()
    wrong = [{"y": r["y"].T} for r in ref]
    assert "shape" in compare(ref, wrong, Tolerance.default()).outputs[0].problem
    assert "missing" in compare(ref, [{"z": r["y"]} for r in ref], Tolerance.default()).outputs[0].problem


def test_integer_outputs_must_match_exactly():
    ref = [{"ids": np.array([1, 2, 3])}]
    assert not compare(ref, [{"ids": np.array([1, 2, 4])}], Tolerance(10.0, 10.0)).passed


def _amplifier(gain: float):
    """A deterministic "source" that multiplies any change of its input by ``gain`` (a chaotic network's
    sensitivity, without the network): y = gain * x - gain * round(x, 3)."""

    def run(sample):
        x = sample["x"].astype(np.float64)
        return {"y": (gain * (x - np.round(x, 3))).astype(np.float32), "ids": sample["ids"] * 2}

    return run


def _inputs(n=3):
    rng = np.random.default_rng(1)
    return [{"x": rng.uniform(1, 2, (1, 8)).astype(np.float32), "ids": np.arange(4, dtype=np.int64)} for _ in range(n)]


def test_nudged_moves_float_inputs_by_at_most_one_ulp_and_keeps_integers():
    sample = _inputs(1)[0]
    moved = nudged(sample, np.random.default_rng(0))
    ulps = np.abs(moved["x"].view(np.int32) - sample["x"].view(np.int32))
    assert ulps.max() == 1 and moved["x"].dtype == np.float32  # moved, by one unit in the last place at most
    assert np.array_equal(moved["ids"], sample["ids"])


def test_source_noise_measures_how_far_the_source_moves_itself():
    samples = _inputs()
    run = _amplifier(1e5)
    reference = [run(s) for s in samples]
    noise = source_noise(run, samples, reference)
    # Inputs in [1, 2) have an ulp of 2**-23: moved by one, the output moves by 1e5 * 2**-23 (0.012) at most.
    assert 1e-3 < noise["y"] <= 1e5 * 2**-23 * 1.01 and noise["ids"] == 0.0
    # A source that does not reproduce itself (dropout left on) gives no floor.
    rng = np.random.default_rng(2)
    noisy = source_noise(lambda s: {**run(s), "y": run(s)["y"] + rng.normal(size=(1, 8))}, samples, reference)
    assert noisy["y"] is None and noisy["ids"] == 0.0


def test_the_source_noise_widens_fp32_atol_but_not_past_the_cap_or_a_users_atol():
    ref = [{"y": np.array([[10.0, 2.0, -3.0]], np.float32)}]
    off = [{"y": ref[0]["y"] + np.array([[0, 4e-3, 0]], np.float32)}]  # 4e-4 of the peak: misses 1e-4
    tol = Tolerance.default()
    assert not compare(ref, off, tol).passed
    widened = compare(ref, off, tol, {"y": 3e-3})
    out = widened.outputs[0]
    assert widened.passed and out.atol == pytest.approx(NOISE_FACTOR * 3e-3) and out.source_noise == 3e-3
    # Never beyond NOISE_CAP of the peak, however noisy the source: a real drift still fails.
    drift = [{"y": ref[0]["y"] + np.array([[0, 0.5, 0]], np.float32)}]
    capped = compare(ref, drift, tol, {"y": 1.0})
    assert not capped.passed and capped.outputs[0].atol == pytest.approx(NOISE_CAP * 10)
    assert "moves by 1 when its inputs move by one ulp" in capped.outputs[0].problem
    # A user's --atol is absolute and int8 tolerances have their own scale: neither is widened.
    absolute = Tolerance(atol=1e-4, rtol=1e-3)
    assert not compare(ref, off, absolute, {"y": 3e-3}).passed
    assert compare(ref, off, absolute, {"y": 3e-3}).outputs[0].source_noise is None
    int8 = Tolerance.default("int8")
    assert compare(ref, off, int8, {"y": 3e-3}).outputs[0].atol == pytest.approx(0.2 * 10)
    # No floor (the source did not reproduce itself): the default atol stands.
    assert not compare(ref, off, tol, {"y": None}).passed
