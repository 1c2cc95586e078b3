"""The one interface every runtime implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.specs import TensorSpec


class Runner:
    """Runs one model: ``run({input name: ndarray}) -> {output name: ndarray}``.

    ``inputs`` and ``outputs`` describe the model's own names, shapes and dtypes, in the
    model's positional order.
    """

    name = "base"  # the runtime's name in the registry (runtimes.registry) and in reports
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def __init__(self, model: Any, threads: int = 1) -> None:
        """``model`` is the artifact's path, or for a source runner the ondevice.sources.Source."""
        raise NotImplementedError

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
