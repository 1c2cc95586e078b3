"""The words every layer shares: targets, precisions, result statuses and exit codes, each written once.

Adding a target is one line in ``Target`` and its suffix in ``ARTIFACT_SUFFIX`` (plus its route modules
and runner); the CLI's choices, the
gate's allowed names, the registry's check and the reports all read this module. The enums are
``StrEnum``s, so a member compares equal to its name and serialises as it in JSON (the report schema is text).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Target(StrEnum):
    """An artifact format ondevice exports to and validates."""

    ONNX = "onnx"
    TFLITE = "tflite"
    OPENVINO = "openvino"
    EXECUTORCH = "executorch"


# The file each target's artifact is: the exporter names its output with it, and `validate` tells by it
# which target a file made elsewhere is (OpenVINO's weights sit beside the .xml in a .bin).
ARTIFACT_SUFFIX: dict[str, str] = {
    Target.ONNX: ".onnx",
    Target.TFLITE: ".tflite",
    Target.OPENVINO: ".xml",
    Target.EXECUTORCH: ".pte",
}

# A plain run exports to these; ExecuTorch is asked for by name.
DEFAULT_TARGETS: tuple[str, ...] = (Target.ONNX.value, Target.TFLITE.value, Target.OPENVINO.value)
TARGETS: tuple[str, ...] = tuple(t.value for t in Target)


class Precision(StrEnum):
    """An artifact's numeric precision; ``FP32`` is the float export every quantized one is judged beside."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC_INT8 = "dynamic-int8"
    INT8 = "int8"


PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)
# What --quantize takes: every precision but the float one every export makes anyway.
QUANTIZED: tuple[str, ...] = tuple(p.value for p in Precision if p is not Precision.FP32)
INT8_PRECISIONS: tuple[str, ...] = (Precision.INT8.value, Precision.DYNAMIC_INT8.value)


class ExitCode(IntEnum):
    """The process's exit code; pipelines branch on these (docs/cli.md)."""

    PASSED = 0
    CHECK_FAILED = 1
    BAD_INPUT = 2
    NOT_CONVERTIBLE = 3
    INTERNAL = 4


class Status(StrEnum):
    """One target's result in a report."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    CONVERSION_ERROR = "conversion_error"
    ERROR = "error"

    @property
    def exit_code(self) -> ExitCode:
        """The one status -> exit code mapping (an inconclusive result the user allowed is judged by the report)."""
        return _STATUS_EXIT[self]


_STATUS_EXIT = {
    Status.PASSED: ExitCode.PASSED,
    Status.FAILED: ExitCode.CHECK_FAILED,
    Status.INCONCLUSIVE: ExitCode.CHECK_FAILED,
    Status.CONVERSION_ERROR: ExitCode.NOT_CONVERTIBLE,
    Status.ERROR: ExitCode.INTERNAL,
}
STATUSES: tuple[str, ...] = tuple(s.value for s in Status)


def exit_code_of(status: str) -> int:
    """The exit code of a status written as text (as a report.json holds it); an unknown one is internal."""
    try:
        return int(Status(status).exit_code)
    except ValueError:
        return int(ExitCode.INTERNAL)
