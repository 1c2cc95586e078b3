"""ondevice: export PyTorch, Keras and ONNX models to ONNX, TFLite (LiteRT) and OpenVINO IR, and prove
each artifact matches its source before it ships.

    import ondevice
    artifacts = ondevice.export(model, example_inputs, targets=("onnx", "tflite", "openvino"), out_dir="out")
    report = ondevice.validate(model, artifacts, samples=8, seed=0)
    report = ondevice.check(model, example_inputs, out_dir="out")   # both in one
"""

from __future__ import annotations

from .api import check, export, validate
from .errors import BadInputError, CheckFailed, ConversionError, OndeviceError
from .report import Report, load_report

__version__ = "0.1.0"
__all__ = [
    "BadInputError",
    "CheckFailed",
    "ConversionError",
    "OndeviceError",
    "Report",
    "__version__",
    "check",
    "export",
    "load_report",
    "validate",
]
