"""OpenVINO IR (and anything ``read_model`` reads) on the CPU plugin, at f32 inference precision."""

from __future__ import annotations

import numpy as np

from ..core import lazy as _lazy
from ..core.specs import TensorSpec
from .base import Runner


def _port_name(port, index: int, prefix: str) -> str:
    names = port.get_names()
    if not names:
        return f"{prefix}_{index}"
    return port.get_any_name() if len(names) == 1 else sorted(names)[0]


class OpenVinoRunner(Runner):
    """A compiled OpenVINO model; inference precision pinned to f32 so the CPU cannot pick bf16."""

    name = "openvino"

    def __init__(self, path, threads: int = 1):
        ov = _lazy.require("openvino")
        core = ov.Core()
        model = core.read_model(str(path))
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        # Names come from the model as read: compiling can add internal names to a port's set.
        self.inputs = [
            TensorSpec(_port_name(p, i, "input"), _partial(p), p.get_element_type().to_dtype().name)
            for i, p in enumerate(model.inputs)
        ]
        self.outputs = [
            TensorSpec(_port_name(p, i, "output"), _partial(p), p.get_element_type().to_dtype().name)
            for i, p in enumerate(model.outputs)
        ]

    def run(self, feeds):
        ordered = [feeds[spec.name] for spec in self.inputs]
        result = self._request.infer(ordered)
        return {
            spec.name: np.array(result[port]) for spec, port in zip(self.outputs, self._compiled.outputs, strict=True)
        }

    def timed_call(self, feeds):
        """Input tensors that share the arrays' memory, set once; ``infer()`` then copies nothing in."""
        ov = _lazy.require("openvino")
        request = self._compiled.create_infer_request()
        arrays = [np.ascontiguousarray(feeds[spec.name]) for spec in self.inputs]
        for index, array in enumerate(arrays):
            request.set_input_tensor(index, ov.Tensor(array, shared_memory=True))
        # The request reads these arrays' memory on every call: the closure keeps them alive.
        return lambda: request.infer() and arrays

    def versions(self):
        return {"openvino": _lazy.require("openvino").__version__}


def _partial(port) -> tuple:
    shape = port.get_partial_shape()
    return tuple(d.get_length() if d.is_static else None for d in shape)
