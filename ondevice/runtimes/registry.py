"""The runners by name, and which runtime runs each target and each source framework.

The registry imports the runner modules (inside a function: each imports its framework only when it runs);
the runner modules import only ``base``, so the package's imports point one way.
"""

from __future__ import annotations

from ..core.errors import BadInputError, InternalError
from ..core.vocab import Target
from .base import Runner

# Which runtime runs each target by default, then the alternatives tried when it is absent.
TARGET_RUNTIMES: dict[str, tuple[str, ...]] = {
    Target.ONNX: ("onnxruntime",),
    Target.OPENVINO: ("openvino",),
    Target.TFLITE: ("litert", "tflite-runtime", "tf-lite"),
    Target.EXECUTORCH: ("executorch",),
}
# The module each runtime imports: the first installed runtime of a target runs it, and doctor looks for these.
RUNTIME_MODULES: dict[str, str] = {
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "litert": "ai_edge_litert",
    "tflite-runtime": "tflite_runtime",
    "tf-lite": "tensorflow",
    "executorch": "executorch",
}
SOURCE_RUNTIMES = {"torch": "torch", "keras": "keras", "onnx": "onnxruntime"}

_RUNNERS: dict[str, type[Runner]] = {}
_builtin_loaded = False


def _builtin_runners() -> tuple[type[Runner], ...]:
    from .executorch_runner import ExecuTorchRunner
    from .keras_runner import KerasRunner
    from .litert_runner import LiteRtRunner, TfLiteRunner, TfliteRuntimeRunner
    from .onnxruntime_runner import OnnxRuntimeRunner
    from .openvino_runner import OpenVinoRunner
    from .torch_runner import TorchRunner

    return (
        OnnxRuntimeRunner,
        OpenVinoRunner,
        LiteRtRunner,
        TfliteRuntimeRunner,
        TfLiteRunner,
        ExecuTorchRunner,
        TorchRunner,
        KerasRunner,
    )


def register_runner(cls: type[Runner]) -> type[Runner]:
    """Register a runner class under its ``name``; a duplicate name is refused. Usable as a decorator."""
    if cls.name in _RUNNERS:
        raise InternalError(f"runner {cls.name!r} is registered twice")
    _RUNNERS[cls.name] = cls
    return cls


def runner_classes() -> dict[str, type[Runner]]:
    """Every registered runner class by name, the built-in ones included."""
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        for cls in _builtin_runners():
            register_runner(cls)
    return dict(_RUNNERS)


def get_runner_class(name: str) -> type[Runner]:
    """A runner class by name; an unknown name lists the valid ones."""
    known = runner_classes()
    if name not in known:
        raise BadInputError(f"unknown runtime {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
