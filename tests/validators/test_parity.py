"""Parity metrics and verdicts on hand-made arrays (no frameworks involved)."""

from __future__ import annotations

import numpy as np
import pytest

from ondevice.validators.parity import Tolerance, compare

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
