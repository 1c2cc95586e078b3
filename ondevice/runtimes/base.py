"""The one interface every runtime implements, and the registry of runners."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.errors import BadInputError, InternalError
from ..core.specs import TensorSpec


class Runner:
    """Runs one model: ``run({input name: ndarray}) -> {output name: ndarray}``.

    ``inputs`` and ``outputs`` describe the model's own names, shapes and dtypes, in the
    model's positional order.
    """

    name = "base"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def timed_call(self, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
        """A zero-argument call that runs one inference on ``feeds``, for latency timing.

        Runners override it with their runtime's cheapest path (inputs bound once, without copies;
        outputs left in the runtime), so the figure is the model's, not this wrapper's: at half a
        millisecond, a dict of copies per call is already a few percent.
        """
        return lambda: self.run(feeds)

    def versions(self) -> dict[str, str]:
        return {}


_RUNNERS: dict[str, Callable[..., Runner]] = {}


def register_runner(name: str):
    """Register a runner class under ``name``; a duplicate name is refused."""

    def add(cls):
        if name in _RUNNERS:
            raise InternalError(f"runner {name!r} is registered twice")
        cls.name = name
        _RUNNERS[name] = cls
        return cls

    return add


def get_runner_class(name: str):
    """A runner class by name; an unknown name lists the valid ones."""
    from . import _load_all

    _load_all()
    if name not in _RUNNERS:
        raise BadInputError(f"unknown runtime {name!r}; known: {', '.join(sorted(_RUNNERS))}")
    return _RUNNERS[name]


def dims(shape) -> tuple:
    """A shape as a tuple of ints, with None for dynamic axes."""
    out = []
    for d in shape:
        try:
            value = int(d)
        except (TypeError, ValueError):
            value = -1
        out.append(None if value < 0 else value)
    return tuple(out)
