"""Import heavy frameworks only where they are used, with one clear line when one is missing."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

from .errors import MissingDependency

# module name -> (pip package, extra that installs it)
_PACKAGES = {
    "torch": ("torch", "torch"),
    "tensorflow": ("tensorflow", "keras"),
    "keras": ("tensorflow", "keras"),
    "tf2onnx": ("tf2onnx", "keras"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "openvino": ("openvino", "openvino"),
    "onnx2tf": ("onnx2tf", "tflite"),
    "litert_torch": ("litert-torch", "tflite"),
    "ai_edge_litert": ("ai-edge-litert", "tflite"),
    "ai_edge_litert.interpreter": ("ai-edge-litert", "tflite"),
    "tflite_runtime.interpreter": ("tflite-runtime", "tflite"),
    "executorch": ("executorch", "executorch"),
    "executorch.runtime": ("executorch", "executorch"),
    "executorch.exir": ("executorch", "executorch"),
    "ray": ("ray", "zoo"),
}

# Quiet the frameworks that print on import; set before any of them loads.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    "KMP_WARNINGS": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore",
}

# Usage telemetry off, set before the frameworks load. onnxruntime reads ORT_DISABLE_TELEMETRY at
# import (without it every process writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and a .ses
# file in the temp folder; disable_telemetry_events() stops neither). NNCF's own switch is NNCF_CI.
TELEMETRY_ENV = {"ORT_DISABLE_TELEMETRY": "1", "NNCF_CI": "1"}


def quiet_environment() -> None:
    """Set the frameworks' logging variables unless the user chose their own; switch telemetry off."""
    for key, value in {**QUIET_ENV, **TELEMETRY_ENV}.items():
        os.environ.setdefault(key, value)
    telemetry_off()


def telemetry_off() -> None:
    """Keep OpenVINO's telemetry package from loading in this process.

    It has no switch but a CI variable: when importable, OpenVINO's converter and NNCF create
    ~/intel/openvino_ga_cid and ~/intel/stats and send usage events. Both fall back to their own
    no-op stub when ``openvino_telemetry`` cannot be imported, which a None in sys.modules ensures.
    """
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # None blocks the import


def require(module: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency naming the package and the extra."""
    if module in sys.modules:
        return sys.modules[module]
    quiet_environment()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package, extra = _PACKAGES.get(module, (module.split(".")[0], "all"))
        raise MissingDependency(
            f"{module} is not usable ({exc}); install it with: pip install 'ondevice[{extra}]' (package {package})"
        ) from exc


def available(module: str) -> bool:
    """True when ``module`` can be imported; does not import it."""
    if module in sys.modules:
        return True
    return importlib.util.find_spec(module.split(".")[0]) is not None


# The distributions a report names with their versions (report.json environment.packages).
REPORTED_PACKAGES = (
    "ondevice",
    "numpy",
    "torch",
    "tensorflow",
    "keras",
    "onnx",
    "onnxruntime",
    "openvino",
    "onnx2tf",
    "tf2onnx",
    "litert-torch",
    "ai-edge-litert",
    "tflite-runtime",
    "executorch",
)


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions, from metadata (nothing imported; absent ones left out)."""
    import importlib.metadata as metadata

    found: dict[str, str] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def is_instance_of(obj: object, module: str, qualname: str) -> bool:
    """isinstance without importing: False when ``module`` was never imported."""
    mod = sys.modules.get(module)
    if mod is None:
        return False
    cls: object = mod
    for part in qualname.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            return False
    return isinstance(cls, type) and isinstance(obj, cls)
