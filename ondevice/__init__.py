"""ondevice: export PyTorch, Keras and ONNX models to ONNX, TFLite (LiteRT) and OpenVINO IR, and prove
each artifact matches its source before it ships.

    import ondevice
    artifacts = ondevice.export(model, example_inputs, targets=("onnx", "tflite", "openvino"), out_dir="out")
    report = ondevice.validate(model, artifacts, samples=8, seed=0)
    report = ondevice.check(model, example_inputs, out_dir="out")   # both in one

Importing this package imports nothing but the error classes: the API, the report and every framework load
on first use, so ``ondevice --help`` and the converters' and validators' subprocesses start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.errors import BadInputError, ConversionError, OndeviceError

if TYPE_CHECKING:
    from .api import check, export, validate
    from .report import Report, load_report

__version__ = "0.1.0"
__all__ = [
    "BadInputError",
    "ConversionError",
    "OndeviceError",
    "Report",
    "__version__",
    "check",
    "export",
    "load_report",
    "validate",
]

_LAZY = {"check": "api", "export": "api", "validate": "api", "Report": "report", "load_report": "report"}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ondevice' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
