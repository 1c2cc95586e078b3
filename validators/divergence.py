"""The first diverging layer: pair the source's intermediate tensors with the artifact's and find
where the error starts.

Input is two lists of tensors in execution order, captured on the same inputs: the source's (one
per layer, named by the user's own names: a module path such as ``layer2.0.conv1``, a Keras layer
name) and the artifact's (tensor name, op type). Pairing, per source tensor in order:

1. by name, where the converter kept the source's names in its tensor names (``/layer1/layer1.0/conv1/``
   from the TorchScript ONNX exporter, ``Conv2d_3`` scopes from litert-torch, ``/conv2d_1/`` from
   TFLiteConverter), confirmed by value;
2. by value: the artifact tensor with the same element count and the best cosine, trying the layout
   moves converters make (channels last, NCL <-> NLC) and a plain reshape.

An artifact tensor claimed by several source tensors keeps those that match it about as well as the
best (identity layers such as Dropout); the others are ``unpaired``: a region the converter fused or
decomposed. A layer *diverges* when its error, scaled to the tensor's magnitude, exceeds the
precision's threshold; the first divergence is the earliest such layer in source order. Unpaired
layers are always listed, so "no divergence found" never hides a region that was not compared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

Json = dict[str, Any]

# precision -> (largest max|err| / peak|source| a layer may show, smallest cosine)
LAYER_TOLERANCE = {"fp32": (1e-3, 0.99999), "fp16": (3e-2, 0.9995), "dynamic-int8": (0.1, 0.995), "int8": (0.3, 0.98)}
MIN_PAIR_COSINE = 0.5  # below this, a same-sized tensor found by value is not the same quantity
KEEP_SHARED_RATIO = 2.0  # sources sharing an artifact tensor stay paired within this error ratio


@dataclass(frozen=True)
class Tensor:
    """One intermediate tensor: name, the op (or layer class) that made it, and its value."""

    name: str
    op_type: str
    value: np.ndarray


# A source layer's claim on an artifact tensor: (depth, source tensor, artifact index, how paired, metrics).
_Claim = tuple[int, Tensor, int, str, Json]


@dataclass(frozen=True)
class LayerError:
    """One paired layer: who stands for whom, how they were paired, and the error."""

    depth: int
    source_layer: str
    source_type: str
    artifact_tensor: str
    op_type: str
    paired_by: str  # "name" or "value"
    max_abs_err: float
    mean_abs_err: float
    cosine: float
    snr_db: float
    peak: float  # max |source| of this tensor: what the error is scaled to
    rel_err: float  # max_abs_err / peak
    diverged: bool
    fused_with: tuple[str, ...] = ()  # source layers whose output the converter folded into this tensor

    def to_json(self) -> dict[str, Any]:
        return {
            k: (_finite(v) if isinstance(v, float) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(self).items()
        }


@dataclass(frozen=True)
class Divergence:
    """The per-layer table, the first divergence (None: none found) and the layers left unpaired."""

    layers: tuple[LayerError, ...]
    unpaired: tuple[Json, ...]  # {"source_layer", "source_type", "reason"}
    precision: str = "fp32"
    artifact_tensors: int = 0
    ranking: tuple[Json, ...] = ()  # quantized: layers by SNR lost, worst first

    @property
    def first(self) -> LayerError | None:
        return next((layer for layer in self.layers if layer.diverged), None)

    def counts(self) -> dict[str, Any]:
        by = [layer.paired_by for layer in self.layers]
        return {
            "by_name": by.count("name"),
            "by_value": by.count("value"),
            "unpaired": len(self.unpaired),
            "source_layers": len(self.layers) + len(self.unpaired),
            "artifact_tensors": self.artifact_tensors,
        }

    def to_json(self) -> dict[str, Any]:
        first = self.first
        return {
            "first": None
            if first is None
            else {
                "source_layer": first.source_layer,
                "artifact_tensor": first.artifact_tensor,
                "op_type": first.op_type,
                "max_abs_err": _finite(first.max_abs_err),
                "cosine": _finite(first.cosine),
                "depth": first.depth,
                "fused_with": list(first.fused_with),
            },
            "precision": self.precision,
            "counts": self.counts(),
            "layers": [layer.to_json() for layer in self.layers],
            "unpaired": list(self.unpaired),
            "ranking": list(self.ranking),
        }


def locate(source: list[Tensor], artifact: list[Tensor], precision: str | None = None) -> Divergence:
    """Pair ``source`` with ``artifact`` tensors and find the first layer whose error exceeds its threshold."""
    precision = precision or "fp32"
    by_numel: dict[int, list[int]] = {}
    for index, tensor in enumerate(artifact):
        if tensor.value.dtype.kind == "f":
            by_numel.setdefault(tensor.value.size, []).append(index)
    claims: list[_Claim] = []
    unpaired: list[Json] = []
    last = 0
    for depth, src in enumerate(source):
        found = _pair(src, artifact, by_numel.get(np.asarray(src.value).size, []), last)
        if found is None:
            unpaired.append(
                {
                    "source_layer": src.name,
                    "source_type": src.op_type,
                    "reason": "no artifact tensor of the same size holds the same values",
                }
            )
        else:
            claims.append((depth, src, *found))
            last = max(last, found[0])
    layers = _resolve(claims, artifact, precision, unpaired)
    unpaired.sort(key=lambda u: [s.name for s in source].index(u["source_layer"]))
    ranking = _ranking(layers) if precision != "fp32" else ()
    return Divergence(tuple(layers), tuple(unpaired), precision, len(artifact), ranking)


def _pair(src: Tensor, artifact: list[Tensor], candidates: list[int], last: int) -> tuple[int, str, Json] | None:
    """(artifact index, how, metrics) for the best match of ``src``, or None.

    A name is evidence enough (a diverged layer keeps its name but not its values); by value, the
    search looks first at tensors not before the last one paired (execution order), then anywhere.
    """
    if not candidates or np.asarray(src.value).dtype.kind != "f":
        return None
    patterns = name_patterns(src.name)
    named = _best(src, artifact, [i for i in candidates if any(p.search(artifact[i].name) for p in patterns)], -1.0)
    valued = _best(src, artifact, [i for i in candidates if i >= last], MIN_PAIR_COSINE) or _best(
        src, artifact, candidates, MIN_PAIR_COSINE
    )
    # A name shared by a layer's parts (a Linear's MatMul before its bias Add) is not proof: a tensor
    # that fits ten times better by value is the layer's output.
    if named and not (
        valued and valued[1]["rel_err"] * 10 < named[1]["rel_err"] and valued[1]["cosine"] >= named[1]["cosine"]
    ):
        return named[0], "name", named[1]
    return (valued[0], "value", valued[1]) if valued else None


def _best(src: Tensor, artifact: list[Tensor], pool: list[int], floor: float) -> tuple[int, Json] | None:
    metrics = [(i, _metrics(src.value, artifact[i].value)) for i in pool]
    scored = [(i, m) for i, m in metrics if m is not None and m["cosine"] >= floor]
    return max(scored, key=lambda item: (item[1]["cosine"], -item[1]["rel_err"])) if scored else None


def _resolve(claims: list[_Claim], artifact: list[Tensor], precision: str, unpaired: list[Json]) -> list[LayerError]:
    """Keep, per artifact tensor, the source layers that match it about as well as the best one."""
    best: dict[int, float] = {}
    for _depth, _src, index, _how, m in claims:
        best[index] = min(best.get(index, np.inf), m["rel_err"])
    rel_tol, min_cos = LAYER_TOLERANCE[precision]
    layers: list[LayerError] = []
    fused: dict[int, list[str]] = {}
    for depth, src, index, how, m in claims:
        if m["rel_err"] > KEEP_SHARED_RATIO * best[index] + rel_tol:
            unpaired.append(
                {
                    "source_layer": src.name,
                    "source_type": src.op_type,
                    "reason": f"fused: {artifact[index].name} matches another layer better",
                    "artifact_tensor": artifact[index].name,
                }
            )
            fused.setdefault(index, []).append(src.name)
            continue
        diverged = m["rel_err"] > rel_tol or m["cosine"] < min_cos
        layers.append(
            LayerError(
                depth,
                src.name,
                src.op_type,
                artifact[index].name,
                artifact[index].op_type,
                how,
                m["max_abs_err"],
                m["mean_abs_err"],
                m["cosine"],
                m["snr_db"],
                m["peak"],
                m["rel_err"],
                diverged,
            )
        )
    by_tensor = {artifact[i].name: tuple(names) for i, names in fused.items()}
    return _drop_rewritten(
        [replace(layer, fused_with=by_tensor.get(layer.artifact_tensor, ())) for layer in layers], unpaired
    )


REWRITE_RUN = 2  # at most this many off layers in a row, then agreement again: a rewrite, not a break


def _drop_rewritten(layers: list[LayerError], unpaired: list[Json]) -> list[LayerError]:
    """Layers that are off while the layer right after them agrees again were rewritten, not broken.

    OpenVINO folds a BatchNorm's scale into the Conv before it, and its shift into the residual Add
    after it: the Conv's and the BatchNorm's outputs then exist only in altered form, and the next
    layer matches exactly. An error that vanishes within REWRITE_RUN layers cannot explain a parity
    miss at the outputs; such layers are listed as unpaired, never reported as a divergence.
    """
    kept: list[LayerError] = []
    run: list[LayerError] = []
    for layer in layers:
        if layer.diverged:
            run.append(layer)
            continue
        if 0 < len(run) <= REWRITE_RUN:
            for off in run:
                unpaired.append(
                    {
                        "source_layer": off.source_layer,
                        "source_type": off.source_type,
                        "reason": f"rewritten: {off.artifact_tensor} differs but {layer.source_layer} "
                        "agrees again (a folded scale or a decomposed op)",
                        "artifact_tensor": off.artifact_tensor,
                    }
                )
        else:
            kept.extend(run)
        run = []
        kept.append(layer)
    return kept + run


def _ranking(layers: list[LayerError], top: int = 10) -> tuple[Json, ...]:
    return tuple(snr_lost(layers)[:top])


def snr_lost(layers: Iterable[LayerError]) -> list[Json]:
    """Every paired layer by SNR lost against the layer before it, worst first: where quantization hurts
    most (what ``--keep-float auto`` keeps in float first). The first paired layer is the baseline (0 dB)."""
    lost: list[Json] = []
    previous: float | None = None
    for layer in layers:
        drop = 0.0 if previous is None else previous - layer.snr_db
        lost.append({"source_layer": layer.source_layer, "snr_db": _finite(layer.snr_db), "snr_lost_db": _finite(drop)})
        previous = layer.snr_db
    return sorted(lost, key=lambda e: -e["snr_lost_db"])


def _metrics(reference: ArrayLike, actual: ArrayLike) -> Json | None:
    """Errors of ``actual`` against ``reference`` under the best-fitting layout (None: no layout fits)."""
    ref = np.asarray(reference, dtype=np.float64)
    best: Json | None = None
    for candidate in _aligned(ref, np.asarray(actual, dtype=np.float64)):
        m = _errors(ref.ravel(), candidate.ravel())
        if best is None or m["cosine"] > best["cosine"]:
            best = m
    return best


def _aligned(ref: np.ndarray, act: np.ndarray) -> Iterator[np.ndarray]:
    """``act`` rearranged into ``ref``'s layout in every way a converter may have laid it out."""
    squeezed_ref = tuple(d for d in ref.shape if d != 1)
    squeezed_act = tuple(d for d in act.shape if d != 1)
    if squeezed_ref == squeezed_act:
        yield act.reshape(ref.shape)
    for rank_perm in _layout_perms(ref.ndim):
        moved = tuple(ref.shape[p] for p in rank_perm)
        if tuple(d for d in moved if d != 1) == squeezed_act:  # square tensors too: same shape, moved data
            yield np.transpose(act.reshape(moved), np.argsort(rank_perm))
    if squeezed_ref != squeezed_act:
        yield act.reshape(ref.shape)  # same element count, no known layout: compare in storage order


def _layout_perms(rank: int) -> list[tuple[int, ...]]:
    if rank < 3:
        return []
    last = (0, *range(2, rank), 1)
    first = (0, rank - 1, *range(1, rank - 1))
    return [last] if last == first else [last, first]


def _errors(ref: np.ndarray, act: np.ndarray) -> dict[str, Any]:
    err = np.abs(act - ref)
    peak = float(np.max(np.abs(ref))) if ref.size else 0.0
    norms = float(np.linalg.norm(ref) * np.linalg.norm(act))
    cosine = float(np.dot(ref, act) / norms) if norms > 0 else (1.0 if not err.any() else 0.0)
    noise = float(np.sum(err**2))
    snr = float("inf") if noise == 0 else 10 * np.log10(max(float(np.sum(ref**2)), 1e-300) / noise)
    max_err = float(err.max()) if err.size else 0.0
    return {
        "max_abs_err": max_err,
        "mean_abs_err": float(err.mean()) if err.size else 0.0,
        "cosine": cosine,
        "snr_db": snr,
        "peak": peak,
        "rel_err": max_err / peak if peak > 0 else (0.0 if max_err == 0 else np.inf),
    }


def name_patterns(layer: str) -> list[re.Pattern[str]]:
    """How converters spell a source layer's name inside their tensor names.

    ``layer1.0.conv1`` (a module path): ``/layer1/layer1.0/conv1/`` (TorchScript ONNX exporter, kept by
    onnx2tf and OpenVINO), ``..._layer1/..._0/..._conv1`` (litert-torch scopes: class name, underscore,
    attribute), ``layer1.0.conv1`` or ``layer1_0_conv1`` as a word. A Keras layer name ``conv2d``:
    ``/conv2d/`` or ``/conv2d_1/`` (TensorFlow numbers repeated scopes).
    """
    parts = layer.split(".")
    # scope names join the parts with "/" or "." and may repeat a parent's prefix: /layer1/layer1.0/conv1/,
    # /encoder/layers.0/linear1/
    scopes = r"(?:[./]|/[\w.]*\.)".join(re.escape(p) for p in parts)
    litert = "".join(rf"/[^/;]*_{re.escape(p)}" for p in parts)
    word = rf"(?<![\w.]){re.escape(layer)}(?![\w])|(?<![\w.]){re.escape('_'.join(parts))}(?![\w])"
    patterns = [rf"/{scopes}(?=/|;|$)", rf"{litert}(?=;|$|/)", word]
    if len(parts) == 1:
        patterns.append(rf"(^|/){re.escape(layer)}(_\d+)?(/|;|$)")
    return [re.compile(p) for p in patterns]


def _finite(x: float) -> float:
    x = float(x)
    return x if np.isfinite(x) else (1e30 if x > 0 else -1e30)
