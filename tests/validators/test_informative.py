"""Uninformative outputs: would a constant artifact pass?"""
from __future__ import annotations

import numpy as np

from validators.informative import uninformative_outputs

RNG = np.random.default_rng(0)


def test_constant_and_nearly_constant_outputs_are_flagged():
    reference = [{"dead": np.zeros(4, np.float32),
                  "flat": 0.5 + 1e-6 * RNG.normal(size=4),
                  "live": RNG.normal(size=4),
                  "cls": np.array([3])} for _ in range(5)]
    found = uninformative_outputs(reference, atol=1e-4, rtol=1e-3)
    assert sorted(found) == ["cls", "dead", "flat"]
    assert "a constant artifact would pass" in found["flat"]


def test_looser_tolerance_makes_more_outputs_uninformative():
    reference = [{"y": 1.0 + 1e-3 * RNG.normal(size=8)} for _ in range(6)]
    assert uninformative_outputs(reference, atol=1e-5, rtol=0) == {}
    assert list(uninformative_outputs(reference, atol=1e-1, rtol=0)) == ["y"]


def test_single_sample_cannot_be_judged():
    assert uninformative_outputs([{"y": np.zeros(3)}], 1e-4, 1e-3) == {}
