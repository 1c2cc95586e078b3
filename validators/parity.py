"""Numerical parity: per output, error metrics over all samples judged against tolerances.

Default tolerances (float32 artifacts, float outputs): an element passes when
``|artifact - source| <= atol + rtol * |source|`` with atol 1e-4, rtol 1e-3. Every element of
every sample must pass. Integer and boolean outputs must match exactly. Tolerances can be
overridden per run (``--atol``/``--rtol``); they are written into the report beside each metric.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# precision -> (atol, rtol); the later precisions belong to quantized artifacts.
DEFAULT_TOLERANCES = {
    "fp32": (1e-4, 1e-3),
    "fp16": (1e-2, 1e-2),
    "dynamic-int8": (5e-2, 5e-2),
    "int8": (1e-1, 1e-1),
}
# Outputs whose spread across samples is below this fraction of their magnitude prove nothing.
INFORMATIVE_SPREAD = 1e-3


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    @classmethod
    def default(cls, precision: str | None = None) -> "Tolerance":
        return cls(*DEFAULT_TOLERANCES[precision or "fp32"])


@dataclass(frozen=True)
class OutputParity:
    """The metrics of one output over every sample, the thresholds, and the verdict."""

    name: str
    max_abs_err: float
    mean_abs_err: float
    max_rel_err: float
    cosine: float
    snr_db: float
    atol: float
    rtol: float
    passed: bool
    problem: str | None = None
    # Counts of |artifact - source| per decade bin over every element; the HTML report plots it.
    abs_err_hist: dict | None = None

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ParityResult:
    passed: bool
    samples: int
    outputs: tuple[OutputParity, ...]

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        return {"passed": self.passed, "samples": self.samples, "outputs": [o.to_json() for o in self.outputs]}

    def problems(self) -> list[str]:
        return [f"{o.name}: {o.problem}" for o in self.outputs if not o.passed and o.problem]


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else (1e30 if x > 0 else -1e30)


def compare_output(name: str, reference: list[np.ndarray], actual: list[np.ndarray], tol: Tolerance) -> OutputParity:
    """Judge one output across all samples."""
    shapes = {(np.shape(r), np.shape(a)) for r, a in zip(reference, actual)}
    mismatched = [(r, a) for r, a in shapes if r != a]
    if mismatched:
        r, a = mismatched[0]
        return OutputParity(name, float("inf"), float("inf"), float("inf"), 0.0, float("-inf"),
                            tol.atol, tol.rtol, False, f"shape {list(a)} differs from the source's {list(r)}")
    ref = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in reference])
    act = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in actual])
    problem = None
    if not np.all(np.isfinite(ref)):
        problem = "the source model's output contains NaN or Inf"
    elif not np.all(np.isfinite(act)):
        problem = f"contains NaN or Inf ({int(np.sum(~np.isfinite(act)))} elements) where the source is finite"
    err = np.abs(act - ref)
    err = np.where(np.isfinite(err), err, np.inf)
    exact = np.issubdtype(np.asarray(reference[0]).dtype, np.integer) or np.asarray(reference[0]).dtype == bool
    atol, rtol = (0.0, 0.0) if exact else (tol.atol, tol.rtol)
    within = err <= atol + rtol * np.abs(ref)
    passed = problem is None and bool(np.all(within))
    if problem is None and not passed:
        worst = int(np.argmax(err - (atol + rtol * np.abs(ref))))
        problem = (f"max abs error {err.max():.3g} exceeds atol {atol:g} + rtol {rtol:g}*|ref| "
                   f"({int(np.sum(~within))} of {err.size} elements; worst {act[worst]:.6g} vs {ref[worst]:.6g})")
    return OutputParity(name, _finite(err.max()) if err.size else 0.0, _finite(err.mean()) if err.size else 0.0,
                        _finite((err / np.maximum(np.abs(ref), 1e-12)).max()) if err.size else 0.0,
                        _cosine(ref, act), _snr_db(ref, act), atol, rtol, passed, problem, _histogram(err))


HIST_EDGES = (0.0, *(10.0 ** k for k in range(-10, 2)), 1e30)


def _histogram(err: np.ndarray) -> dict:
    """Element counts per decade of absolute error; non-finite errors land in the last bin."""
    counts, _ = np.histogram(np.minimum(err, HIST_EDGES[-1]), bins=HIST_EDGES)
    return {"edges": list(HIST_EDGES), "counts": [int(c) for c in counts]}


def _cosine(ref: np.ndarray, act: np.ndarray) -> float:
    denom = np.linalg.norm(ref) * np.linalg.norm(act)
    if not np.isfinite(denom):
        return 0.0
    if denom == 0:
        return 1.0 if np.array_equal(ref, act) else 0.0
    return float(np.dot(ref, act) / denom)


def _snr_db(ref: np.ndarray, act: np.ndarray) -> float:
    noise = float(np.sum((ref - act) ** 2))
    signal = float(np.sum(ref ** 2))
    if not np.isfinite(noise):
        return -1e30
    if noise == 0:
        return 1e30 if signal > 0 else 0.0
    return float(10 * np.log10(max(signal, 1e-300) / noise))


def compare(reference: list[dict], actual: list[dict], tol: Tolerance) -> ParityResult:
    """Judge every output over every sample; ``reference`` and ``actual`` hold one dict per sample."""
    names = list(reference[0])
    outputs = []
    for name in names:
        if any(name not in a for a in actual):
            outputs.append(OutputParity(name, float("inf"), float("inf"), float("inf"), 0.0, float("-inf"),
                                        tol.atol, tol.rtol, False, "missing from the artifact's outputs"))
            continue
        outputs.append(compare_output(name, [r[name] for r in reference], [a[name] for a in actual], tol))
    return ParityResult(all(o.passed for o in outputs), len(reference), tuple(outputs))


def uninformative_outputs(reference: list[dict]) -> dict[str, str]:
    """Outputs whose values barely change across samples, with the reason: parity on them proves nothing."""
    found = {}
    if len(reference) < 2:
        return found
    for name in reference[0]:
        stack = np.stack([np.asarray(r[name], dtype=np.float64) for r in reference])
        if not np.all(np.isfinite(stack)):
            continue
        spread = float(np.mean(np.std(stack, axis=0)))
        scale = float(np.mean(np.abs(stack)))
        if spread <= INFORMATIVE_SPREAD * max(scale, 1e-12) or spread < 1e-12:
            found[name] = (f"output {name!r} barely changes across {len(reference)} samples "
                           f"(mean spread {spread:.3g} vs magnitude {scale:.3g}): dead activations, "
                           "a saturated output or inputs outside the useful range")
    return found
