"""PyTorch modules (eager, TorchScript or an exported program's module) as the reference."""

from __future__ import annotations

import numpy as np

from ..core import lazy as _lazy
from .base import Runner


def flatten_outputs(result) -> list[tuple[str | None, object]]:
    """A model's return value as (name or None, tensor) pairs, in order."""
    if isinstance(result, dict):
        return [(str(k), v) for k, v in result.items()]
    if isinstance(result, (tuple, list)):
        pairs = []
        for item in result:
            pairs.extend(flatten_outputs(item))
        return [(None, v) for _, v in pairs]
    if hasattr(result, "_asdict"):
        return [(k, v) for k, v in result._asdict().items()]
    return [(None, result)]


def output_names(pairs) -> list[str]:
    """Names for flattened outputs: their own, else ``output`` or ``output_0``, ``output_1``..."""
    if len(pairs) == 1 and pairs[0][0] is None:
        return ["output"]
    return [name if name is not None else f"output_{i}" for i, (name, _) in enumerate(pairs)]


class TorchRunner(Runner):
    """Calls the module positionally in ``inputs`` order under ``torch.inference_mode``."""

    name = "torch"

    def __init__(self, source, threads: int = 1):
        self._torch = _lazy.require("torch")
        self._torch.set_num_threads(threads)
        self._model = source.model
        self.inputs = list(source.inputs)
        self.outputs = list(source.outputs)

    def run(self, feeds):
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[spec.name])) for spec in self.inputs]
        with torch.inference_mode():
            pairs = flatten_outputs(self._model(*args))
        names = [s.name for s in self.outputs] or output_names(pairs)
        return {name: _numpy(value) for name, (_, value) in zip(names, pairs, strict=True)}

    def versions(self):
        return {"torch": self._torch.__version__}


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
