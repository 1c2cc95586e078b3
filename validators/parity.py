"""Numerical parity: per output, error metrics over all samples judged against tolerances.

An element passes when ``|artifact - source| <= atol + rtol * |source|``; every element of every
sample must pass, and neither side may hold NaN or Inf. Integer and boolean outputs must match
exactly. Quantized artifacts are judged by their precision's row of ``DEFAULT_TOLERANCES``:

| precision    | atol               | rtol | min cosine | min SNR dB | min top-1 (classifier outputs) |
|--------------|--------------------|------|------------|------------|--------------------------------|
| fp32         | 1e-4 x max(1, peak)| 1e-3 | -          | -          | -                              |
| fp16         | 1e-2 x peak        | 1e-2 | 0.9999     | 50         | 1.00                           |
| dynamic-int8 | 5e-2 x peak        | 5e-2 | 0.999      | 30         | 0.95                           |
| int8         | 0.2 x peak         | 0.1  | 0.995      | 20         | 0.90                           |

"peak" is the output's largest source magnitude over all samples: quantization error scales with the
range a tensor is quantized over, so a fixed atol would pass int8 logits in [-1, 1] and fail the same
model's logits in [-50, 50]. Float rounding scales the same way, more gently: fp32 atol is 1e-4 of the
peak for outputs beyond [-1, 1] and 1e-4 inside it (a deep network's logits in [-30, 30] differ between
runtimes by a few 1e-4 from summation order alone). Cosine and SNR catch an output that drifts
everywhere by a little; the element bound catches one that breaks in a few places. Classifier-like
outputs (2-D ``[batch, classes]`` floats) also report top-1 and top-k agreement with the source; a row
whose top class differs counts as agreeing when the source scored the artifact's pick within atol of its
own (a near tie). Tolerances can be overridden per run (``--atol``/``--rtol``; an fp32 ``--atol`` is
absolute); the thresholds used are written into the report beside each metric.

An export is never asked to match the source more closely than the source matches itself. Where an
fp32 output misses its default atol, the source runs again on the same samples with each float input
moved by at most one unit in its last place (``source_noise``): a network that amplifies rounding
(random-weight EfficientNets do, 1e-7 at the input becoming 3e-3 at the logits) moves its own output
that far, and every runtime's summation order does the same. That output's atol becomes
``NOISE_FACTOR`` times the change, at most ``NOISE_CAP`` of its peak (fp16's atol); both figures are
in the report. A source that does not reproduce its own outputs on the same inputs gives no floor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Outputs = dict[str, np.ndarray]  # one sample's outputs by name

# precision -> (atol, rtol, atol is relative to the output's peak, min cosine, min SNR dB, min top-1,
# the least peak atol is taken of)
DEFAULT_TOLERANCES = {
    "fp32": (1e-4, 1e-3, True, None, None, None, 1.0),
    "fp16": (1e-2, 1e-2, True, 0.9999, 50.0, 1.0, 0.0),
    "dynamic-int8": (5e-2, 5e-2, True, 0.999, 30.0, 0.95, 0.0),
    "int8": (0.2, 0.1, True, 0.995, 20.0, 0.90, 0.0),
}
TOP_K = 5
# The source's own rounding noise: an fp32 atol is widened to NOISE_FACTOR times it, never beyond
# NOISE_CAP of the output's peak. The export's arithmetic differs from the source's at every layer, not
# only at the input, hence more than 1x (1.3x-1.7x measured on EfficientNetB1 across three runtimes).
NOISE_FACTOR = 8.0
NOISE_CAP = 1e-2
NOISE_DRAWS = 2
CALIBRATION_HINT = (
    "int8 error this large usually means the calibration data do not resemble the inputs "
    "(pass real ones with --calibration)"
)


@dataclass(frozen=True)
class Tolerance:
    """Thresholds for one artifact's outputs; ``atol_of_peak`` scales atol by each output's peak |source|,
    taken as at least ``min_peak``."""

    atol: float
    rtol: float
    atol_of_peak: bool = False
    min_cosine: float | None = None
    min_snr_db: float | None = None
    min_top1: float | None = None
    min_peak: float = 0.0
    precision: str = "fp32"

    @classmethod
    def default(cls, precision: str | None = None) -> Tolerance:
        """The documented default set for ``precision`` (None: float32)."""
        name = precision or "fp32"
        return cls(*DEFAULT_TOLERANCES[name], precision=name)


@dataclass(frozen=True, kw_only=True)
class OutputParity:
    """The metrics of one output over every sample, the thresholds, and the verdict (built by keyword:
    nineteen fields in a row are too easy to shift by one)."""

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
    abs_err_hist: dict[str, Any] | None = None
    kind: str = "float"  # "float", "classifier" ([batch, classes]) or "exact" (integers)
    peak: float | None = None  # max |source|, the scale a peak-relative atol is taken of
    top1_agreement: float | None = None
    topk_agreement: float | None = None
    top_k: int | None = None
    min_cosine: float | None = None
    min_snr_db: float | None = None
    min_top1: float | None = None
    # fp32, measured when the default atol was missed: how far the source's own output moves when its
    # float inputs move by one unit in the last place (atol above is then widened by it).
    source_noise: float | None = None

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParityResult:
    passed: bool
    samples: int
    outputs: tuple[OutputParity, ...]
    precision: str = "fp32"

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "samples": self.samples, "outputs": [o.to_json() for o in self.outputs]}

    def problems(self) -> list[str]:
        return [f"{o.name}: {o.problem}" for o in self.outputs if not o.passed and o.problem]


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else (1e30 if x > 0 else -1e30)


def _failed(name: str, tol: Tolerance, problem: str) -> OutputParity:
    return OutputParity(
        name=name,
        max_abs_err=float("inf"),
        mean_abs_err=float("inf"),
        max_rel_err=float("inf"),
        cosine=0.0,
        snr_db=float("-inf"),
        atol=tol.atol,
        rtol=tol.rtol,
        passed=False,
        problem=problem,
    )


def compare_output(
    name: str, reference: list[np.ndarray], actual: list[np.ndarray], tol: Tolerance, noise: float | None = None
) -> OutputParity:
    """Judge one output across all samples (``noise``: the source's own, see ``source_noise``)."""
    shapes = {(np.shape(r), np.shape(a)) for r, a in zip(reference, actual, strict=True)}
    mismatched = [(r, a) for r, a in shapes if r != a]
    if mismatched:
        r, a = mismatched[0]
        return _failed(name, tol, f"shape {list(a)} differs from the source's {list(r)}")
    ref = np.concatenate([np.asarray(r, dtype=np.float64).ravel() for r in reference])
    act = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in actual])
    kind = output_kind(reference[0])
    err = np.abs(act - ref)
    err = np.where(np.isfinite(err), err, np.inf)
    peak = _finite(np.abs(ref).max()) if ref.size and np.all(np.isfinite(ref)) else 0.0
    atol, rtol = _element_tolerance(kind, tol, peak)
    if noise is not None and widens(tol) and kind != "exact":
        atol = max(atol, min(NOISE_FACTOR * noise, NOISE_CAP * max(peak, tol.min_peak)))
    within = err <= atol + rtol * np.abs(ref)
    cosine, snr = _cosine(ref, act), _snr_db(ref, act)
    top1, topk, k = _agreement(reference, actual, atol) if kind == "classifier" else (None, None, None)
    problem = _nan_problem(ref, act) or _element_problem(err, within, atol, rtol, act, ref)
    if problem and noise is not None and widens(tol) and kind != "exact":
        problem += f"; the source's own output moves by {noise:.3g} when its inputs move by one ulp"
    if problem is None and kind != "exact":
        problem = _statistical_problem(tol, cosine, snr, top1)
    if problem and tol.precision == "int8" and kind != "exact" and "NaN" not in problem:
        problem = f"{problem}; {CALIBRATION_HINT}"
    statistical = kind != "exact"
    return OutputParity(
        name=name,
        max_abs_err=_finite(err.max()) if err.size else 0.0,
        mean_abs_err=_finite(err.mean()) if err.size else 0.0,
        max_rel_err=_finite((err / np.maximum(np.abs(ref), 1e-12)).max()) if err.size else 0.0,
        cosine=cosine,
        snr_db=snr,
        atol=atol,
        rtol=rtol,
        passed=problem is None,
        problem=problem,
        abs_err_hist=_histogram(err),
        kind=kind,
        peak=peak,
        top1_agreement=top1,
        topk_agreement=topk,
        top_k=k,
        min_cosine=tol.min_cosine if statistical else None,
        min_snr_db=tol.min_snr_db if statistical else None,
        min_top1=tol.min_top1 if kind == "classifier" else None,
        source_noise=noise if kind != "exact" and widens(tol) else None,
    )


def widens(tol: Tolerance) -> bool:
    """Whether the source's rounding noise may widen ``tol``: fp32 defaults only, never a user's --atol."""
    return tol.precision == "fp32" and tol.atol_of_peak


def output_kind(sample: np.ndarray) -> str:
    """ "exact" for integer/boolean outputs, "classifier" for 2-D [batch, classes] floats, else "float"."""
    array = np.asarray(sample)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return "exact"
    if array.ndim == 2 and array.shape[1] >= 2:
        return "classifier"
    return "float"


def _element_tolerance(kind: str, tol: Tolerance, peak: float) -> tuple[float, float]:
    if kind == "exact":
        return 0.0, 0.0
    return (tol.atol * max(peak, tol.min_peak) if tol.atol_of_peak else tol.atol), tol.rtol


def _nan_problem(ref: np.ndarray, act: np.ndarray) -> str | None:
    if not np.all(np.isfinite(ref)):
        return "the source model's output contains NaN or Inf"
    if not np.all(np.isfinite(act)):
        return f"contains NaN or Inf ({int(np.sum(~np.isfinite(act)))} elements) where the source is finite"
    return None


def _element_problem(
    err: np.ndarray, within: np.ndarray, atol: float, rtol: float, act: np.ndarray, ref: np.ndarray
) -> str | None:
    if bool(np.all(within)):
        return None
    worst = int(np.argmax(err - (atol + rtol * np.abs(ref))))
    return (
        f"max abs error {err.max():.3g} exceeds atol {atol:.3g} + rtol {rtol:g}*|ref| "
        f"({int(np.sum(~within))} of {err.size} elements; worst {act[worst]:.6g} vs {ref[worst]:.6g})"
    )


def _statistical_problem(tol: Tolerance, cosine: float, snr: float, top1: float | None) -> str | None:
    if tol.min_cosine is not None and cosine < tol.min_cosine:
        return f"cosine {cosine:.6f} is below {tol.min_cosine:g}"
    if tol.min_snr_db is not None and snr < tol.min_snr_db:
        return f"SNR {snr:.1f} dB is below {tol.min_snr_db:g} dB"
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        return f"top-1 agreement {top1:.3f} is below {tol.min_top1:g}"
    return None


def _agreement(reference: list[Any], actual: list[Any], atol: float) -> tuple[float, float, int]:
    """Top-1 agreement (near ties within atol forgiven) and top-k agreement, over every row."""
    ref = np.concatenate([np.asarray(r, dtype=np.float64) for r in reference])
    act = np.concatenate([np.asarray(a, dtype=np.float64) for a in actual])
    rows = np.arange(ref.shape[0])
    ref_top, act_top = ref.argmax(axis=1), act.argmax(axis=1)
    agree = (ref_top == act_top) | (ref[rows, act_top] >= ref[rows, ref_top] - atol)
    k = min(TOP_K, ref.shape[1] - 1) or 1
    act_topk = np.argsort(-act, axis=1)[:, :k]
    in_topk = np.any(act_topk == ref_top[:, None], axis=1)
    return float(agree.mean()), float(in_topk.mean()), int(k)


HIST_EDGES = (0.0, *(10.0**k for k in range(-10, 2)), 1e30)


def _histogram(err: np.ndarray) -> dict[str, Any]:
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
    signal = float(np.sum(ref**2))
    if not np.isfinite(noise):
        return -1e30
    if noise == 0:
        return 1e30 if signal > 0 else 0.0
    return float(10 * np.log10(max(signal, 1e-300) / noise))


def compare(
    reference: list[Outputs], actual: list[Outputs], tol: Tolerance, noise: Mapping[str, float | None] | None = None
) -> ParityResult:
    """Judge every output over every sample; ``reference`` and ``actual`` hold one dict per sample
    (``noise``: the source's rounding noise per output, from ``source_noise``)."""
    names = list(reference[0])
    outputs = []
    for name in names:
        if any(name not in a for a in actual):
            outputs.append(_failed(name, tol, "missing from the artifact's outputs"))
            continue
        floor = (noise or {}).get(name)
        outputs.append(compare_output(name, [r[name] for r in reference], [a[name] for a in actual], tol, floor))
    return ParityResult(all(o.passed for o in outputs), len(reference), tuple(outputs), tol.precision)


def compare_vs_float(float_outputs: list[Outputs], quantized_outputs: list[Outputs], precision: str) -> ParityResult:
    """The quantization error alone: a quantized artifact judged against its float sibling's outputs.

    Judged by the same precision's tolerances as against the source, so a report can show which
    step lost the accuracy (conversion: float artifact vs source; quantization: this).
    """
    return compare(float_outputs, quantized_outputs, Tolerance.default(precision))


def constant_artifact_passes(reference: list[Outputs], tol: Tolerance) -> dict[str, str]:
    """Outputs on which an artifact returning the source's per-element average would pass ``tol``.

    Parity on such an output cannot fail, so it proves nothing: the verdict is inconclusive. Judged
    by ``compare`` itself, so peak-relative atol, cosine, SNR and top-1 all count, as they do for a
    real artifact.
    """
    found: dict[str, str] = {}
    if len(reference) < 2:
        return found
    for name in reference[0]:
        stack = np.stack([np.asarray(r[name], dtype=np.float64) for r in reference])
        if not np.all(np.isfinite(stack)):
            continue  # NaN/Inf is judged (and failed) by parity itself
        mean = stack.mean(axis=0).astype(np.asarray(reference[0][name]).dtype)
        verdict = compare_output(name, [r[name] for r in reference], [mean] * len(reference), tol)
        if verdict.passed:
            deviation = float(np.abs(stack - stack.mean(axis=0)).max())
            found[name] = (
                f"output {name!r} barely changes across {len(reference)} samples (largest deviation "
                f"from its average {deviation:.3g}, within the {tol.precision} tolerance: atol "
                f"{verdict.atol:.3g} + rtol {verdict.rtol:g}*|ref|): a constant artifact would pass; "
                "dead activations, a saturated output or inputs outside the useful range"
            )
    return found


def nudged(sample: Outputs, rng: np.random.Generator) -> Outputs:
    """``sample`` with each float input moved by at most one unit in its last place (integers kept)."""
    moved = {}
    for name, value in sample.items():
        array = np.asarray(value)
        if array.dtype.kind == "f":
            step = np.spacing(array).astype(np.float64)  # one unit in the last place, per element
            array = (array + rng.uniform(-1.0, 1.0, array.shape) * step).astype(array.dtype)
        moved[name] = array
    return moved


def source_noise(
    run: Callable[[Outputs], Outputs], samples: list[Outputs], reference: list[Outputs], seed: int = 0
) -> dict[str, float | None]:
    """Per output, the largest change of the source's output over ``NOISE_DRAWS`` runs of ``samples`` with
    their float inputs nudged by one ulp: the rounding noise the source itself carries.

    None for an output the source does not reproduce on the very same inputs (dropout left on, a
    nondeterministic kernel): its differences are no floor, and nothing is widened by them.
    """
    again = [run(sample) for sample in samples]
    rng = np.random.default_rng(seed)
    draws = [[run(nudged(sample, rng)) for sample in samples] for _ in range(NOISE_DRAWS)]
    noise: dict[str, float | None] = {}
    for name in reference[0]:
        if not all(np.array_equal(r[name], a[name]) for r, a in zip(reference, again, strict=True)):
            noise[name] = None
            continue
        moved = [
            float(np.max(np.abs(np.asarray(d[name], np.float64) - np.asarray(r[name], np.float64)), initial=0.0))
            for draw in draws
            for r, d in zip(reference, draw, strict=True)
        ]
        noise[name] = max(moved) if all(np.isfinite(moved)) else None
    return noise
