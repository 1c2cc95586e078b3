"""Keras models as the reference, called directly (not ``predict``) in inference mode."""

from __future__ import annotations

import numpy as np

from ..core import lazy as _lazy
from .base import Runner


def keras_output_names(model) -> list[str]:
    """The model's output names, in order."""
    names = list(getattr(model, "output_names", None) or [])
    if names:
        return [str(n) for n in names]
    outputs = getattr(model, "outputs", None) or []
    return [str(t.name).split(":")[0] for t in outputs] or ["output"]


class KerasRunner(Runner):
    """Feeds inputs positionally in the model's order."""

    name = "keras"

    def __init__(self, source, threads: int = 1):
        tf = _lazy.require("tensorflow")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TF was already initialised with its own thread pools
        self._model = source.model
        self.inputs = list(source.inputs)
        self.outputs = list(source.outputs)
        self._tf = tf

    def run(self, feeds):
        args = [feeds[spec.name] for spec in self.inputs]
        result = self._model(args if len(args) > 1 else args[0], training=False)
        if isinstance(result, dict):
            values = list(result.values())
        elif isinstance(result, (list, tuple)):
            values = list(result)
        else:
            values = [result]
        names = [s.name for s in self.outputs] or keras_output_names(self._model)
        return {name: np.asarray(v) for name, v in zip(names, values, strict=True)}

    def versions(self):
        keras = _lazy.require("keras")
        return {"tensorflow": self._tf.__version__, "keras": keras.__version__}
