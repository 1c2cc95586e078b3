"""Is a parity check able to fail? Outputs that barely change across samples prove nothing.

A dead ReLU layer, a saturated softmax or inputs outside the model's useful range give outputs
that hardly move with the input; then a broken artifact that returned a constant would pass.
That is the test used here: an output is uninformative when an artifact always returning the
per-element average of the source's outputs would be within the tolerance on every sample.
"""
from __future__ import annotations

import numpy as np


def uninformative_outputs(reference: list[dict], atol: float, rtol: float) -> dict[str, str]:
    """Output name -> reason, for each output a constant artifact would match within (atol, rtol)."""
    found = {}
    if len(reference) < 2:
        return found
    for name in reference[0]:
        stack = np.stack([np.asarray(r[name], dtype=np.float64) for r in reference])
        if not np.all(np.isfinite(stack)):
            continue   # NaN/Inf is judged (and failed) by parity itself
        exact = np.asarray(reference[0][name]).dtype.kind in "iub"
        a, r = (0.0, 0.0) if exact else (atol, rtol)
        deviation = np.abs(stack - stack.mean(axis=0))
        if np.all(deviation <= a + r * np.abs(stack)):
            found[name] = (f"output {name!r} barely changes across {len(reference)} samples (largest deviation "
                           f"from its average {deviation.max():.3g}, within atol {a:g} + rtol {r:g}*|ref|): "
                           "a constant artifact would pass; dead activations, a saturated output or inputs "
                           "outside the useful range")
    return found
