"""Routes and their ordered strategies, registered by name."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ondevice.core.errors import BadInputError, InternalError
from ondevice.core.vocab import QUANTIZED, TARGETS

from . import _dynamic

# The exporter should check --dynamic (names, axes) before any strategy runs: a bad name is the
# user's error (exit 2), not a conversion failure.
check_dynamic = _dynamic.check_dynamic

INT8_KERNELS = ("portable", "vnni")


class StrategyFailed(Exception):
    """A strategy could not produce its artifact; the message is one line naming the cause."""


@dataclass
class ConversionJob:
    """Everything a strategy may read. ``workdir`` is an empty folder owned by this attempt."""

    source: Any  # ondevice.sources.Source
    target: str
    workdir: Path
    dynamic: dict = field(default_factory=dict)  # input name -> list of dynamic axes
    # What the strategy's starter began before this target's turn (see ``starts``); None: nothing.
    early: Any = None


@dataclass
class Converted:
    """What a strategy produced: the artifact file (plus side files) and how its I/O differs."""

    path: Path
    files: list[Path] = field(default_factory=list)  # side files, e.g. the IR's .bin
    channels_last: bool = False  # inputs/outputs of rank >= 3 moved their channel axis last
    versions: dict = field(default_factory=dict)  # converter package -> version
    notes: list[str] = field(default_factory=list)
    # input name -> the axes of job.dynamic the artifact really keeps dynamic (read back from the
    # artifact or the traced program); a requested axis missing here was fixed, and a note says why.
    dynamic_kept: dict = field(default_factory=dict)
    # What a delegating runtime took: ops per delegate and those left on portable kernels (ExecuTorch).
    delegation: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Strategy:
    """One way to produce a target from a source framework."""

    name: str
    source: str
    target: str
    convert: Callable[[ConversionJob], Converted]
    order: int
    summary: str


_STRATEGIES: dict[str, Strategy] = {}


def strategy(source: str, target: str, name: str, order: int, summary: str):
    """Decorator registering ``fn(job) -> Converted`` as a strategy; a duplicate name is refused."""
    if target not in TARGETS:
        raise InternalError(f"unknown target {target!r}")

    def register(fn):
        if name in _STRATEGIES:
            raise InternalError(f"strategy {name!r} is registered twice")
        _STRATEGIES[name] = Strategy(name, source, target, fn, order, summary)
        return fn

    return register


_STARTERS: dict[str, Callable[[ConversionJob], Any]] = {}


def starts(name: str):
    """Decorator registering ``fn(job) -> handle | None`` as the way to begin strategy ``name`` ahead of its
    target's turn, typically a conversion in a process of its own that overlaps the targets before it.

    The exporter calls it at the start of an export where ``name`` is a target's first strategy, and
    hands the handle to the strategy as ``job.early``; the handle's ``close()`` ends whatever is left
    of it when the export ends. If ``fn`` raises, the strategy converts in its turn as usual.
    """

    def register(fn):
        _STARTERS[name] = fn
        return fn

    return register


def starter_for(name: str) -> Callable[[ConversionJob], Any] | None:
    """The early start of strategy ``name`` (see ``starts``), or None."""
    _load_all()
    return _STARTERS.get(name)


_WARMERS: dict[str, Callable[[], None]] = {}


def warms(name: str):
    """Decorator registering ``fn()`` as the way to begin strategy ``name``'s slowest set-up before the source
    is even loaded, typically ``isolate.start_spare``: its framework imported in a process its starter takes."""

    def register(fn):
        _WARMERS[name] = fn
        return fn

    return register


@contextlib.contextmanager
def warmed(frameworks, targets, forced: str | None = None):
    """Begin the set-up of the first strategy of each route from one of ``frameworks`` (what the source may
    turn out to be) to one of ``targets`` (``forced``: that strategy only); on leaving, end what no one took.
    A warmer that fails costs nothing: its strategy starts from scratch in its turn."""
    from ondevice.core.isolate import close_spares

    try:
        chosen = get_strategy(forced) if forced else None
        for framework in frameworks:
            for target in targets:
                first = first_strategy(framework, target, chosen)
                warm = _WARMERS.get(first.name) if first else None
                if warm is not None:
                    with contextlib.suppress(Exception):
                        warm()
        yield
    finally:
        close_spares()


ROUTE_MODULES = (
    "torch_onnx",
    "torch_openvino",
    "torch_tflite",
    "torch_executorch",
    "keras_onnx",
    "keras_onnx_torch",
    "keras_openvino",
    "keras_tflite",
    "onnx_onnx",
    "onnx_openvino",
    "onnx_tflite",
)


def _load_all() -> None:
    # Importing the route modules registers their strategies; they import frameworks lazily.
    for module in ROUTE_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def strategies_for(source: str, target: str) -> list[Strategy]:
    """The strategies of one route, best first."""
    _load_all()
    found = sorted(
        (s for s in _STRATEGIES.values() if s.source == source and s.target == target), key=lambda s: s.order
    )
    return found


def first_strategy(source: str, target: str, forced: Strategy | None = None) -> Strategy | None:
    """The strategy a route tries first (``forced``, when it makes this route); None if there is none."""
    first = forced or next(iter(strategies_for(source, target)), None)
    return first if first is not None and (first.source, first.target) == (source, target) else None


def get_strategy(name: str) -> Strategy:
    """A strategy by name; an unknown name lists the valid ones."""
    _load_all()
    if name not in _STRATEGIES:
        raise BadInputError(f"unknown strategy {name!r}; known: {', '.join(sorted(_STRATEGIES))}")
    return _STRATEGIES[name]


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise BadInputError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return target


def check_route(source: str, target: str) -> None:
    """Refuse a target that no strategy reaches from ``source`` (the user's error, exit 2)."""
    if not strategies_for(source, target):
        starts = sorted({s.source for s in _STRATEGIES.values() if s.target == target})
        raise BadInputError(
            f"no route from {source} to {target}: {target} is made from {' or '.join(starts)} sources only"
        )


# ---- quantizers: a step after the float export, one registry per (target, precision) -----------

PRECISIONS = QUANTIZED  # what a quantizer can make: every precision but fp32


class ConverterCrashed(Exception):
    """A converter's process died (a signal): the target is an ``error``, not a conversion failure."""

    def __init__(self, reason: str, signal_name: str | None = None):
        super().__init__(reason)
        self.signal_name = signal_name


@dataclass
class QuantizeJob:
    """What a quantizer may read: the accepted float artifact and calibration in its layout.

    ``calibration`` holds one dict per sample, keyed by the float artifact's input names, each
    array already transposed and cast the way that artifact takes it.
    """

    source: Any  # ondevice.sources.Source
    target: str
    precision: str
    float_artifact: Any  # ondevice.artifacts.Artifact, installed
    workdir: Path
    calibration: list = field(default_factory=list)
    int8_io: bool = False
    # "portable": int8 that holds on every x86 CPU (7-bit weights for onnxruntime, NNCF overflow fix);
    # "vnni": 8-bit weights, exact only where int8 dot products accumulate in 32 bits (VNNI, AMX).
    int8_kernels: str = "portable"
    # Nodes of the float artifact to leave unquantized (--keep-float), by the name the target's quantizer
    # takes: ONNX node names, OpenVINO friendly names, TFLite op output tensor names.
    keep_float: tuple = ()

    @property
    def input_names(self) -> list[str]:
        """The float artifact's input names, in the source's input order."""
        return [m.artifact for m in self.float_artifact.inputs]

    def output_path(self, suffix: str) -> Path:
        """Where a quantizer writes its file: ``model.<precision><suffix>`` in the workdir."""
        return self.workdir / f"model.{self.precision}{suffix}"


@dataclass(frozen=True)
class Quantizer:
    """One way to quantize a target's float artifact to some precisions."""

    name: str
    target: str
    precisions: tuple
    quantize: Callable[[QuantizeJob], Converted]
    order: int
    frameworks: tuple | None = None  # source frameworks it serves; None: any
    summary: str = ""
    keeps_float: bool = False  # honours QuantizeJob.keep_float (leaves those nodes in float)


_QUANTIZERS: dict[str, Quantizer] = {}
QUANTIZER_MODULES = ("quantize_onnx", "quantize_openvino", "quantize_tflite", "quantize_executorch")


def quantizer(
    target: str, precisions, name: str, order: int, frameworks=None, summary: str = "", keeps_float: bool = False
):
    """Decorator registering ``fn(job) -> Converted`` as a quantizer; a duplicate name is refused."""
    precisions = (precisions,) if isinstance(precisions, str) else tuple(precisions)
    if target not in TARGETS:
        raise InternalError(f"unknown target {target!r}")
    if not set(precisions) <= set(PRECISIONS):
        raise InternalError(f"unknown precision in {precisions!r}")

    def register(fn):
        if name in _QUANTIZERS:
            raise InternalError(f"quantizer {name!r} is registered twice")
        frameworks_ = tuple(frameworks) if frameworks else None
        _QUANTIZERS[name] = Quantizer(name, target, precisions, fn, order, frameworks_, summary, keeps_float)
        return fn

    return register


def quantizers_for(target: str, precision: str, framework: str | None = None) -> list[Quantizer]:
    """The quantizers that can make ``precision`` for ``target`` from a ``framework`` source, best first."""
    for module in QUANTIZER_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    found = [
        q
        for q in _QUANTIZERS.values()
        if q.target == target and precision in q.precisions and (q.frameworks is None or framework in q.frameworks)
    ]
    return sorted(found, key=lambda q: q.order)


def check_precision(precision: str | None) -> str | None:
    """None (float) or a known precision; anything else is the user's error."""
    if precision is not None and precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    return precision
