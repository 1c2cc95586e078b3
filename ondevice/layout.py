"""Match a source's inputs/outputs to an artifact's: by name, else by order; plus layout moves.

A mapping entry says which artifact tensor stands for which source tensor and the axis
permutation that turns the source's array into the artifact's (e.g. NCHW -> NHWC is
``(0, 2, 3, 1)``). The manifest stores these so parity compares like with like.

``match_io`` serves ondevice's own exports (the converter says whether it moved channels last);
``match_external`` serves artifacts made by any tool, where nothing is known but the files: it
pairs by name, then by shape under the layout moves converters make, and refuses to guess when
two pairings fit (``AmbiguousMatch``, answered with ``--io-map``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core.errors import BadInputError, ConversionError
from .core.specs import TensorSpec, clean_name

Perm = tuple[int, ...]  # source axis for each artifact axis, as np.transpose takes it
Shape = tuple[Any, ...]
# A source tensor's partner: the artifact tensor, the evidence that paired them, and the --io-map entry if any.
_Pair = tuple[TensorSpec, str, "IOHint | None"]

_LAYOUT_NAMES = {
    (0, 2, 3, 1): "NCHW->NHWC",
    (0, 2, 1): "NCW->NWC",
    (0, 2, 3, 4, 1): "NCDHW->NDHWC",
    (0, 3, 1, 2): "NHWC->NCHW",
    (0, 4, 1, 2, 3): "NDHWC->NCDHW",
}


@dataclass(frozen=True)
class IOMap:
    """One source tensor and the artifact tensor that stands for it."""

    source: str
    artifact: str
    perm: Perm | None = None  # source array -> artifact array
    matched_by: str = "name"  # "name", "order", "position" (args_0, Identity_1...), "shape" or "io-map"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.source,
            "artifact_name": self.artifact,
            "perm": list(self.perm) if self.perm else None,
            "layout": _LAYOUT_NAMES.get(self.perm) if self.perm else None,
            "matched_by": self.matched_by,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IOMap:
        perm = tuple(data["perm"]) if data.get("perm") else None
        return cls(data["name"], data["artifact_name"], perm, data.get("matched_by", "name"))


def channels_last_perm(rank: int) -> Perm | None:
    """The permutation that moves axis 1 last (what onnx2tf does to rank >= 3 tensors)."""
    if rank < 3:
        return None
    return (0, *range(2, rank), 1)


def _compatible(source_shape: Shape, artifact_shape: Shape) -> bool:
    if len(source_shape) != len(artifact_shape):
        return False
    return all(a is None or s is None or a == s for s, a in zip(source_shape, artifact_shape, strict=True))


def _perm_for(src: TensorSpec, art: TensorSpec, channels_last: bool) -> Perm | bool | None:
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
        pairs = [(s, a, "order") for s, a in zip(source, artifact, strict=True)]
    maps = []
    for src, art, how in pairs:
        perm = _perm_for(src, art, channels_last)
        if isinstance(perm, bool):
            raise ConversionError(
                f"{kind} {src.name!r} has shape {list(src.shape)} in the source but "
                f"{art.name!r} has {list(art.shape)} in the artifact"
            )
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


# ---- artifacts made by any tool ----------------------------------------------------------------


class AmbiguousMatch(BadInputError):
    """Two pairings of source and artifact tensors fit the evidence; the user must pick with --io-map."""


def layout_perms(rank: int) -> list[Perm]:
    """The moves converters make to a rank-``rank`` tensor: channels last (onnx2tf's NCHW -> NHWC,
    NCL -> NLC, NCDHW -> NDHWC) and channels first (a channels-last source exported channels first)."""
    if rank < 3:
        return []
    last = (0, *range(2, rank), 1)
    first = (0, rank - 1, *range(1, rank - 1))
    return [last] if first == last else [last, first]


def moves_layout(source_framework: str, target: str) -> bool:
    """Whether a common converter of this route changes I/O layout where the shape would also fit as is.

    Only TFLite from a channels-first framework: onnx2tf moves channels last, litert-torch does
    not, so either is plausible. ONNX and OpenVINO converters keep the source's layout, and Keras is
    channels last already; there, a layout move is tried only when the shape does not fit as is.
    """
    return target == "tflite" and source_framework in ("torch", "onnx")


def _fitting_perms(src: TensorSpec, art: TensorSpec, layout_moves: bool) -> list[Perm | None]:
    """Every plausible permutation (None: as is) under which ``src`` has ``art``'s shape (one that
    moves only axes of size 1 is the same as none, and dropped when none fits)."""
    fits: list[Perm | None] = []
    if _compatible(src.shape, art.shape):
        fits.append(None)
        if not layout_moves:
            return fits
    for perm in layout_perms(len(src.shape)):
        moved = tuple(src.shape[p] for p in perm)
        if _compatible(moved, art.shape) and not (None in fits and _keeps_order(src.shape, perm)):
            fits.append(perm)
    return fits


def _keeps_order(shape: Shape, perm: Perm) -> bool:
    """True when ``perm`` only moves axes of size 1: the data is the same as without it."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


_POSITIONAL = re.compile(r"^(?:args_|output_|Identity_?)(\d*)(?:_output)?$")


def positional_index(name: str) -> int | None:
    """The position a converter's generated name encodes: litert-torch ``args_1``/``output_1``,
    onnx2tf ``Identity``/``Identity_1`` (outputs in ONNX order); None for any other name."""
    match = _POSITIONAL.match(name)
    if not match:
        return None
    return int(match[1]) if match[1] else (0 if name == "Identity" else None)


@dataclass(frozen=True)
class IOHint:
    """One ``--io-map SRC=ART[:PERM]`` entry."""

    source: str
    artifact: str
    perm: Perm | None = None
    given_perm: bool = False


def parse_io_map(text: str) -> IOHint:
    """``src=art`` or ``src=art:0,2,3,1`` (``:none`` for no permutation); BadInputError otherwise."""
    src, sep, rest = text.partition("=")
    art, _, perm_text = (
        rest.rpartition(":") if ":" in rest and _looks_like_perm(rest.rpartition(":")[2]) else (rest, "", "")
    )
    if not sep or not src or not art:
        raise BadInputError(f"bad --io-map {text!r}: expected SOURCE_NAME=ARTIFACT_NAME[:PERM], e.g. x=input:0,2,3,1")
    if not perm_text:
        return IOHint(src, art)
    if perm_text.lower() == "none":
        return IOHint(src, art, None, True)
    perm = tuple(int(p) for p in perm_text.split(","))
    if sorted(perm) != list(range(len(perm))):
        raise BadInputError(f"bad --io-map {text!r}: {perm_text} is not a permutation of 0..{len(perm) - 1}")
    return IOHint(src, art, perm, True)


def _looks_like_perm(text: str) -> bool:
    return text.lower() == "none" or bool(re.fullmatch(r"\d+(,\d+)+", text))


def match_external(
    source: list[TensorSpec], artifact: list[TensorSpec], kind: str, layout_moves: bool, hints: Sequence[IOHint] = ()
) -> list[IOMap]:
    """Pair every source tensor with one artifact tensor of a file made by any tool.

    Evidence in order: ``hints`` (--io-map), equal names, names that encode a position
    (``args_0``, ``Identity_1``), then shape under the plausible layout moves. A pairing is
    accepted only when it is the single one that fits; otherwise AmbiguousMatch says what fits
    and how to choose. The maps come back in source order; ``matched_by`` says which evidence won.
    """
    if len(source) != len(artifact):
        raise BadInputError(
            f"the artifact has {len(artifact)} {kind}s ({', '.join(a.name for a in artifact)}), "
            f"the source {len(source)} ({', '.join(s.name for s in source)})"
        )
    pairs = _hinted_pairs(source, artifact, kind, hints)
    pairs.update(_named_pairs(source, artifact, pairs))
    rest = [s for s in source if s.name not in pairs]
    if rest:
        pairs.update(
            _shape_pairs(
                rest, [a for a in artifact if a.name not in {p[0].name for p in pairs.values()}], kind, layout_moves
            )
        )
    return [_with_perm(s, *pairs[s.name], kind, layout_moves) for s in source]


def _hinted_pairs(
    source: list[TensorSpec], artifact: list[TensorSpec], kind: str, hints: Sequence[IOHint]
) -> dict[str, _Pair]:
    by_src = {s.name: s for s in source}
    by_art = {a.name: a for a in artifact}
    pairs: dict[str, _Pair] = {}
    for hint in hints:
        if hint.source in by_src and hint.artifact in by_art:
            pairs[hint.source] = (by_art[hint.artifact], "io-map", hint)
    return pairs


def _named_pairs(source: list[TensorSpec], artifact: list[TensorSpec], taken: dict[str, _Pair]) -> dict[str, _Pair]:
    """Pairs by equal names, then by names that encode a position."""
    used = {p[0].name for p in taken.values()}
    free = [a for a in artifact if a.name not in used]
    pairs: dict[str, _Pair] = {}
    by_name: dict[str, list[TensorSpec]] = {}
    for a in free:
        by_name.setdefault(clean_name(a.name), []).append(a)
    for s in source:
        if s.name not in taken and len(by_name.get(s.name, [])) == 1:
            pairs[s.name] = (by_name[s.name][0], "name", None)
    used |= {p[0].name for p in pairs.values()}
    positions: dict[int, list[TensorSpec]] = {}
    for a in artifact:
        index = positional_index(clean_name(a.name))
        if a.name not in used and index is not None:
            positions.setdefault(index, []).append(a)
    for index, s in enumerate(source):
        if s.name not in taken and s.name not in pairs and len(positions.get(index, [])) == 1:
            pairs[s.name] = (positions[index][0], "position", None)
    return pairs


def _shape_pairs(
    source: list[TensorSpec], artifact: list[TensorSpec], kind: str, layout_moves: bool
) -> dict[str, _Pair]:
    """The one assignment of the remaining tensors in which every pair fits by shape."""
    options = {s.name: [a for a in artifact if _fitting_perms(s, a, layout_moves)] for s in source}
    found: list[dict[str, TensorSpec]] = []
    _assign(source, options, {}, found)
    if len(found) == 1:
        return {name: (art, "shape", None) for name, art in found[0].items()}
    if not found:
        lines = "; ".join(f"{s.name} {list(s.shape)}" for s in source)
        offered = "; ".join(f"{a.name} {list(a.shape)}" for a in artifact)
        raise BadInputError(
            f"no {kind} of the artifact fits the source's by name or shape (source: {lines}; "
            f"artifact: {offered}); map them with --io-map SOURCE_NAME=ARTIFACT_NAME[:PERM]"
        )
    choices = "; ".join(
        f"{s.name} -> {' or '.join(a.name for a in options[s.name])}" for s in source if len(options[s.name]) > 1
    )
    example = ", ".join(f"--io-map {name}={art.name}" for name, art in found[0].items())
    raise AmbiguousMatch(
        f"{len(found)} pairings of {kind}s fit by shape and no name decides ({choices}): "
        f"ondevice will not guess; say which, e.g. {example}"
    )


def _assign(
    source: list[TensorSpec],
    options: dict[str, list[TensorSpec]],
    chosen: dict[str, TensorSpec],
    found: list[dict[str, TensorSpec]],
) -> None:
    """Every perfect matching (at most two are needed to know it is not unique)."""
    if len(found) > 1:
        return
    if len(chosen) == len(source):
        found.append(dict(chosen))
        return
    src = source[len(chosen)]
    for art in options[src.name]:
        if all(art is not other for other in chosen.values()):
            chosen[src.name] = art
            _assign(source, options, chosen, found)
            del chosen[src.name]


def _with_perm(src: TensorSpec, art: TensorSpec, how: str, hint: IOHint | None, kind: str, layout_moves: bool) -> IOMap:
    """The pair with its permutation; a pair that fits several ways (1x8x8: as is, or NCL -> NLC) is asked about."""
    if hint is not None and hint.given_perm:
        moved = tuple(src.shape[p] for p in hint.perm) if hint.perm else tuple(src.shape)
        if len(moved) != len(art.shape) or not _compatible(moved, art.shape):
            raise BadInputError(
                f"--io-map {src.name}={art.name}: {kind} {src.name!r} {list(src.shape)} under "
                f"{hint.perm or 'no permutation'} does not give {art.name!r}'s shape {list(art.shape)}"
            )
        return IOMap(src.name, art.name, hint.perm, how)
    fits = _fitting_perms(src, art, layout_moves)
    if not fits:
        raise BadInputError(
            f"{kind} {src.name!r} has shape {list(src.shape)} in the source but {art.name!r} has "
            f"{list(art.shape)} in the artifact, under no known layout; map it with "
            f"--io-map {src.name}={art.name}:PERM"
        )
    if len(fits) > 1:
        shown = " or ".join("as is" if p is None else ",".join(map(str, p)) for p in fits)
        raise AmbiguousMatch(
            f"{kind} {src.name!r} {list(src.shape)} fits {art.name!r} {list(art.shape)} {shown}: "
            f"ondevice will not guess the layout; say which, e.g. --io-map {src.name}={art.name}:"
            f"{'none' if fits[0] is None else ','.join(map(str, fits[0]))}"
        )
    return IOMap(src.name, art.name, fits[0], how)
