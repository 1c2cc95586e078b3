"""What an export and a validation are asked to do, as two frozen objects built once at the edge.

The CLI (from its flags), the Python API (from its keywords) and a zoo job (from a model's options)
each build an ``ExportOptions`` and a ``ValidateOptions`` and hand them down whole, so a new setting is
one field here instead of a parameter threaded through every layer. Values are checked on
construction: a bad one is the user's error (exit 2) before any model loads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.errors import BadInputError
from .core.vocab import DEFAULT_TARGETS

if TYPE_CHECKING:
    from .keep_float import KeepFloat

WORKER_TIMEOUT_S = 600  # a runtime worker that takes longer than this is killed (target "error")


def default_threads() -> int:
    """The same thread count for every runtime: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def _flag(flags: Mapping[str, Any], name: str, default: Any) -> Any:
    """A flag's value, or ``default`` where it is absent or None (argparse leaves unset flags None)."""
    value = flags.get(name)
    return default if value is None else value


@dataclass(frozen=True)
class ExportOptions:
    """How to export: which targets and precisions, and the knobs of the converters and quantizers."""

    targets: tuple[str, ...] = DEFAULT_TARGETS  # target names, made in this order
    # Precisions made from each float artifact besides it ("fp16", "dynamic-int8", "int8"); None or
    # one name is accepted and stored as a tuple.
    quantize: tuple[str, ...] = ()
    strategy: str | None = None  # force one strategy by name (its target must be the one requested)
    dynamic: Mapping[str, Any] = field(default_factory=dict)  # input name -> axes kept dynamic
    calibration: str | Path | None = None  # .npz of int8 calibration inputs (None: generated, with a warning)
    threads: int = 0  # threads of every runtime that probes an artifact (0 or None: default_threads())
    int8_io: bool = False  # full-integer TFLite models take and give int8
    int8_kernels: str = "portable"  # "portable" (exact on every x86 CPU) or "vnni" (8-bit weights)
    # Accelerator backends each target's artifact must run on whole ({target: [backend]} or
    # ["tflite:gpu"]); checked against the targets at export.
    require: Mapping[str, Any] | list[str] | tuple[str, ...] | None = None
    keep_float: KeepFloat | None = None  # int8 layers left in float until int8 passes (keep_float.parse)
    keep_work: bool = False  # keep OUT/.work, where the converters worked

    def __post_init__(self) -> None:
        from ondevice.converters.registry import INT8_KERNELS, check_precision, check_target

        quantize = self.quantize
        names = () if quantize is None else (quantize,) if isinstance(quantize, str) else tuple(quantize)
        for name in names:
            check_precision(name)
        object.__setattr__(self, "quantize", tuple(dict.fromkeys(names)))
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        object.__setattr__(self, "targets", tuple(check_target(t) for t in targets))
        object.__setattr__(self, "dynamic", dict(self.dynamic or {}))
        object.__setattr__(self, "require", self.require or None)  # the CLI's default is []
        object.__setattr__(self, "threads", self.threads or default_threads())
        if self.int8_io and "int8" not in self.quantize:
            raise BadInputError("--int8-io applies to full-integer models: add --quantize int8")
        if self.int8_kernels not in INT8_KERNELS:
            raise BadInputError(f"unknown --int8-kernels {self.int8_kernels!r}; choose from {', '.join(INT8_KERNELS)}")

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], keep_float: KeepFloat | None = None) -> ExportOptions:
        """From check's flags by their argparse names (``vars(args)``, or a zoo model's options)."""
        return cls(
            targets=tuple(_flag(flags, "to", DEFAULT_TARGETS)),
            quantize=_flag(flags, "quantize", ()),
            strategy=flags.get("strategy"),
            dynamic=dict(_flag(flags, "dynamic", ())),
            calibration=flags.get("calibration"),
            threads=flags.get("threads") or 0,
            int8_io=bool(flags.get("int8_io")),
            int8_kernels=_flag(flags, "int8_kernels", "portable"),
            require=flags.get("require"),
            keep_float=keep_float,
            keep_work=bool(flags.get("keep_work")),
        )


@dataclass(frozen=True)
class ValidateOptions:
    """How to validate: the samples, the tolerances, the timing, and which checks may pass or be skipped."""

    samples: int = 8  # random samples compared (ignored with inputs_file)
    seed: int = 0  # seed of the random samples
    inputs_file: str | Path | None = None  # golden inputs (.npz, one array per input, first axis = sample)
    atol: float | None = None  # overrides every artifact's precision-default absolute tolerance
    rtol: float | None = None  # overrides every artifact's precision-default relative tolerance
    threads: int = 0  # threads of the source and every runtime (0 or None: default_threads())
    runs: int | None = None  # timed latency runs (None: 20 to 50, until the p50's 95% CI is within 2%)
    warmup: int = 5  # untimed runs before them
    budget_s: float | None = None  # stop timing after this many seconds (None: all runs)
    timeout_s: float = WORKER_TIMEOUT_S  # a runtime worker that takes longer is killed (target "error")
    allow_inconclusive: bool = False  # a constant output that passes parity passes the run (exit 0, not 5)
    allow_precision_change: bool = False  # an artifact whose real precision differs from the one asked passes
    emulate_cpu: bool = True  # int8 artifacts also run on an emulated AVX2 CPU where this one has VNNI/AMX
    explain: bool = True  # locate the first diverging layer of a target that failed parity

    def __post_init__(self) -> None:
        if self.samples < 1 and not self.inputs_file:
            raise BadInputError("--samples must be at least 1")
        object.__setattr__(self, "threads", self.threads or default_threads())

    @property
    def tolerance(self) -> dict[str, Any] | None:
        """atol/rtol as overrides of each artifact's own precision defaults (None: no override)."""
        overrides = {k: v for k, v in (("atol", self.atol), ("rtol", self.rtol)) if v is not None}
        return overrides or None

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any]) -> ValidateOptions:
        """From validate's or check's flags by their argparse names (``vars(args)``, or a zoo model's options)."""
        return cls(
            samples=_flag(flags, "samples", 8),
            seed=_flag(flags, "seed", 0),
            inputs_file=flags.get("inputs"),
            atol=flags.get("atol"),
            rtol=flags.get("rtol"),
            threads=flags.get("threads") or 0,
            runs=flags.get("runs"),
            allow_inconclusive=bool(flags.get("allow_inconclusive")),
            allow_precision_change=bool(flags.get("allow_precision_change")),
            emulate_cpu=not flags.get("no_emulate_cpu"),
            explain=not flags.get("no_explain"),
        )
