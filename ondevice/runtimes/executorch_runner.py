"""ExecuTorch programs (.pte) on the ExecuTorch runtime: XNNPACK subgraphs and portable kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core import lazy as _lazy
from ..core.specs import TensorSpec
from .base import Runner

# executorch's ScalarType codes (the runtime's TensorInfo.dtype()) -> numpy dtype names.
_DTYPES = {
    0: "uint8",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "int64",
    5: "float16",
    6: "float32",
    7: "float64",
    11: "bool",
    15: "bfloat16",
}
# Where ondevice's exports keep the source's tensor names (see converters/_executorch.py).
_NAME_METHODS = ("ondevice_input_names", "ondevice_output_names")


class ExecuTorchRunner(Runner):
    """The program's ``forward`` method; tensors named after the source where the program says so."""

    name = "executorch"

    def __init__(self, path, threads: int = 1):
        runtime = _lazy.require("executorch.runtime")
        self._torch = _lazy.require("torch")
        _set_threads(threads)
        program = runtime.Runtime.get().load_program(Path(path))
        self._method = program.load_method("forward")
        meta = self._method.metadata
        names = [_names(program, method) for method in _NAME_METHODS]
        self.inputs = _specs([meta.input_tensor_meta(i) for i in range(meta.num_inputs())], names[0], "input")
        self.outputs = _specs([meta.output_tensor_meta(i) for i in range(meta.num_outputs())], names[1], "output")

    def run(self, feeds):
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[spec.name])) for spec in self.inputs]
        results = self._method.execute(args)
        # Copies: an output tensor may be a view of the method's planned memory, which the next call reuses.
        return {
            spec.name: np.array(value.detach().numpy() if hasattr(value, "numpy") else value, copy=True)
            for spec, value in zip(self.outputs, results, strict=True)
        }

    def timed_call(self, feeds):
        """Input tensors made once (sharing the arrays' memory); each call is one ``execute``."""
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[spec.name])) for spec in self.inputs]
        method = self._method
        return lambda: method.execute(args)

    def versions(self):
        import importlib.metadata as md

        return {"executorch": md.version("executorch")}


def _set_threads(threads: int) -> None:
    """XNNPACK's subgraphs run on the runtime's one thread pool; size it (portable kernels use one thread)."""
    bindings = _lazy.require("executorch.extension.pybindings.portable_lib")
    if bindings._threadpool_get_thread_count() != threads:
        # "unsafe" because it replaces the pool under running methods: a runner's process has none yet.
        bindings._unsafe_reset_threadpool(threads)


def _names(program, method: str) -> list[str] | None:
    if method not in program.method_names:
        return None
    values = program.load_method(method).execute([])
    return [str(v) for v in values] if all(isinstance(v, str) for v in values) else None


def _specs(infos, names, prefix: str) -> list[TensorSpec]:
    if names is None or len(names) != len(infos):
        names = [prefix] if len(infos) == 1 else [f"{prefix}_{i}" for i in range(len(infos))]
    return [
        TensorSpec(name, tuple(int(d) for d in info.sizes()), _DTYPES.get(int(info.dtype()), "float32"))
        for name, info in zip(names, infos, strict=True)
    ]
