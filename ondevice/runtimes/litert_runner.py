"""``.tflite`` files on the LiteRT interpreter, or tflite-runtime / tf.lite where that is what exists."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..core import lazy as _lazy
from ..core.specs import TensorSpec, clean_name
from .base import Runner, dims


class _InterpreterRunner(Runner):
    """The low-level interpreter API: tensors in subgraph order, names without decorations."""

    module = "ai_edge_litert.interpreter"

    def __init__(self, path, threads: int = 1):
        interpreter_cls = self._interpreter_class()
        self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self.inputs = _unique([self._spec(d) for d in self._in], self._in, self._interp, "inputs")
        self.outputs = _unique([self._spec(d) for d in self._out], self._out, self._interp, "outputs")

    def _interpreter_class(self):
        return _lazy.require(self.module).Interpreter

    @staticmethod
    def _spec(detail) -> TensorSpec:
        signature = detail.get("shape_signature")
        shape = dims(signature) if signature is not None and len(signature) else dims(detail["shape"])
        # A quantized (int8-I/O) tensor is presented as float32: run() applies its scale and zero point.
        dtype = "float32" if _quantized(detail) else np.dtype(detail["dtype"]).name
        return TensorSpec(clean_name(detail["name"]), shape, dtype)

    def run(self, feeds):
        for spec, detail in zip(self.inputs, self._in, strict=True):
            value = _quantize(feeds[spec.name], detail) if _quantized(detail) else feeds[spec.name]
            value = np.ascontiguousarray(value, dtype=detail["dtype"])
            if tuple(detail["shape"]) != value.shape:
                self._interp.resize_tensor_input(detail["index"], value.shape)
                self._interp.allocate_tensors()
                self._in = self._interp.get_input_details()
                self._out = self._interp.get_output_details()
                detail = next(d for d in self._in if d["index"] == detail["index"])
            self._interp.set_tensor(detail["index"], value)
        self._interp.invoke()
        return {
            spec.name: _dequantize(np.array(self._interp.get_tensor(d["index"])), d)
            for spec, d in zip(self.outputs, self._out, strict=True)
        }

    def timed_call(self, feeds):
        """Inputs written into the interpreter's tensors once; each call is one ``invoke()``."""
        self.run(feeds)  # resizes and allocates for these shapes if needed, and sets the inputs
        return self._interp.invoke

    def versions(self):
        import importlib.metadata as md

        package = {
            "ai_edge_litert.interpreter": "ai-edge-litert",
            "tflite_runtime.interpreter": "tflite-runtime",
            "tensorflow.lite": "tensorflow",
        }[self.module]
        return {package: md.version(package)}


def _unique(specs: list[TensorSpec], details, interpreter, kind: str) -> list[TensorSpec]:
    """Specs with distinct names: TFLiteConverter names every output of a Keras model
    ``StatefulPartitionedCall_1``; the signature's names (``output_0``, ...) tell them apart."""
    names = [s.name for s in specs]
    if len(set(names)) == len(names):
        return specs
    signatures: dict[str, Any] = getattr(interpreter, "_get_full_signature_list", dict)() or {}
    by_index = {}
    if len(signatures) == 1:
        by_index = {index: name for name, index in next(iter(signatures.values())).get(kind, {}).items()}
    return [
        replace(s, name=by_index.get(d["index"]) or f"{s.name}_{i}")
        for i, (s, d) in enumerate(zip(specs, details, strict=True))
    ]


def _quantized(detail) -> bool:
    scale, _ = detail.get("quantization") or (0.0, 0)
    return np.dtype(detail["dtype"]).kind in "iu" and scale != 0.0


def _quantize(value, detail) -> np.ndarray:
    """A float array as the tensor's integers: round(x / scale) + zero point, saturated."""
    value = np.asarray(value)
    if value.dtype.kind in "iu":  # already integers: the caller quantized
        return value
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(value / scale) + zero, info.min, info.max)


def _dequantize(value: np.ndarray, detail) -> np.ndarray:
    if not _quantized(detail):
        return value
    scale, zero = detail["quantization"]
    return ((value.astype(np.float32) - zero) * scale).astype(np.float32)


class LiteRtRunner(_InterpreterRunner):
    """The default: ``ai_edge_litert.interpreter.Interpreter``."""

    name = "litert"
    module = "ai_edge_litert.interpreter"


class TfliteRuntimeRunner(_InterpreterRunner):
    """``tflite_runtime`` (NumPy 1 environments without TensorFlow, typically an edge box)."""

    name = "tflite-runtime"
    module = "tflite_runtime.interpreter"


class TfLiteRunner(_InterpreterRunner):
    """``tf.lite.Interpreter`` from a full TensorFlow install."""

    name = "tf-lite"
    module = "tensorflow.lite"

    def _interpreter_class(self):
        return _lazy.require("tensorflow").lite.Interpreter
