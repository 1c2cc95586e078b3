"""One runner per runtime behind one interface (see base.Runner)."""

from .base import Runner, get_runner_class, register_runner

# Which runtime runs each target by default, then the alternatives tried when it is absent.
TARGET_RUNTIMES = {
    "onnx": ("onnxruntime",),
    "openvino": ("openvino",),
    "tflite": ("litert", "tflite-runtime", "tf-lite"),
    "executorch": ("executorch",),
}
SOURCE_RUNTIMES = {"torch": "torch", "keras": "keras", "onnx": "onnxruntime"}


def _load_all() -> None:
    from . import executorch_runner, keras_runner, litert_runner, onnxruntime_runner, openvino_runner, torch_runner  # noqa: F401


__all__ = ["SOURCE_RUNTIMES", "TARGET_RUNTIMES", "Runner", "get_runner_class", "register_runner"]
