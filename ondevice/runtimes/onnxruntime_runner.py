"""ONNX files on onnxruntime's CPU provider."""

from __future__ import annotations

import numpy as np

from ..core import lazy as _lazy
from ..core.specs import TensorSpec
from .base import Runner, dims

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(bool)": "bool",
}


class OnnxRuntimeRunner(Runner):
    """An ``.onnx`` file in an onnxruntime InferenceSession."""

    name = "onnxruntime"

    def __init__(self, path, threads: int = 1):
        ort = _lazy.require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [
            TensorSpec(i.name, dims(i.shape), _ORT_TYPES.get(i.type, "float32")) for i in self._session.get_inputs()
        ]
        self.outputs = [
            TensorSpec(o.name, dims(o.shape), _ORT_TYPES.get(o.type, "float32")) for o in self._session.get_outputs()
        ]
        self._output_names = [o.name for o in self.outputs]

    def run(self, feeds):
        values = self._session.run(self._output_names, feeds)
        return {name: np.asarray(v) for name, v in zip(self._output_names, values, strict=True)}

    def timed_call(self, feeds):
        """IOBinding: inputs bound once from the arrays' own memory, outputs kept by onnxruntime."""
        binding = self._session.io_binding()
        # onnxruntime reads these arrays' memory on every call: the closure keeps them alive.
        arrays = [np.ascontiguousarray(feeds[spec.name]) for spec in self.inputs]
        for spec, array in zip(self.inputs, arrays, strict=True):
            binding.bind_cpu_input(spec.name, array)
        for name in self._output_names:
            binding.bind_output(name, "cpu")
        session = self._session
        return lambda: session.run_with_iobinding(binding) or arrays

    def versions(self):
        return {"onnxruntime": _lazy.require("onnxruntime").__version__}
