"""Match a source's inputs/outputs to an artifact's: by name, else by order; plus layout moves.

A mapping entry says which artifact tensor stands for which source tensor and the axis
permutation that turns the source's array into the artifact's (e.g. NCHW -> NHWC is
``(0, 2, 3, 1)``). The manifest stores these so parity compares like with like.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConversionError
from .runtimes.base import clean_name
from .specs import TensorSpec

_LAYOUT_NAMES = {(0, 2, 3, 1): "NCHW->NHWC", (0, 2, 1): "NCW->NWC", (0, 2, 3, 4, 1): "NCDHW->NDHWC"}


@dataclass(frozen=True)
class IOMap:
    """One source tensor and the artifact tensor that stands for it."""

    source: str
    artifact: str
    perm: tuple | None = None     # source array -> artifact array
    matched_by: str = "name"      # "name" or "order" or "shape"

    def to_json(self) -> dict:
        return {"name": self.source, "artifact_name": self.artifact,
                "perm": list(self.perm) if self.perm else None,
                "layout": _LAYOUT_NAMES.get(self.perm) if self.perm else None, "matched_by": self.matched_by}

    @classmethod
    def from_json(cls, data: dict) -> "IOMap":
        perm = tuple(data["perm"]) if data.get("perm") else None
        return cls(data["name"], data["artifact_name"], perm, data.get("matched_by", "name"))


def channels_last_perm(rank: int) -> tuple | None:
    """The permutation that moves axis 1 last (what onnx2tf does to rank >= 3 tensors)."""
    if rank < 3:
        return None
    return (0, *range(2, rank), 1)


def _compatible(source_shape, artifact_shape) -> bool:
    if len(source_shape) != len(artifact_shape):
        return False
    return all(a is None or s is None or a == s for s, a in zip(source_shape, artifact_shape))


def _perm_for(src: TensorSpec, art: TensorSpec, channels_last: bool) -> tuple | None | bool:
    """The permutation from src to art, None for none needed, False when no known one fits."""
    if _compatible(src.shape, art.shape):
        return None
    perm = channels_last_perm(len(src.shape)) if channels_last else None
    if perm and _compatible(tuple(src.shape[p] for p in perm), art.shape):
        return perm
    return False


def match_io(source: list[TensorSpec], artifact: list[TensorSpec], channels_last: bool, kind: str) -> list[IOMap]:
    """Map every source tensor to one artifact tensor, or raise ConversionError saying why not."""
    if len(source) != len(artifact):
        raise ConversionError(f"the artifact has {len(artifact)} {kind}s, the source {len(source)}")
    by_name = {clean_name(a.name): a for a in artifact}
    if all(s.name in by_name for s in source):
        pairs = [(s, by_name[s.name], "name") for s in source]
    else:
        pairs = [(s, a, "order") for s, a in zip(source, artifact)]
    maps = []
    for src, art, how in pairs:
        perm = _perm_for(src, art, channels_last)
        if perm is False:
            raise ConversionError(f"{kind} {src.name!r} has shape {list(src.shape)} in the source but "
                                  f"{art.name!r} has {list(art.shape)} in the artifact")
        maps.append(IOMap(src.name, art.name, perm, how))
    return maps


def to_artifact(value: np.ndarray, io: IOMap, dtype: str) -> np.ndarray:
    """A source-layout array as the artifact expects it."""
    if io.perm:
        value = np.transpose(value, io.perm)
    return np.ascontiguousarray(value.astype(dtype, copy=False))


def to_source(value: np.ndarray, io: IOMap) -> np.ndarray:
    """An artifact-layout array back in the source's layout."""
    if io.perm and value.ndim == len(io.perm):
        value = np.transpose(value, np.argsort(io.perm))
    return value
