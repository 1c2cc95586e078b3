"""What every route into OpenVINO shares: an offline convert_model, port naming, an fp32 save, ONNX file -> IR."""

from __future__ import annotations

import contextlib
import importlib
from importlib import metadata
from pathlib import Path

from ondevice.core.lazy import require
from ondevice.core.specs import concrete_shape

from ._dynamic import kept_from_shapes, onnx_input_shapes
from ._onnx_graph import io_names
from .registry import Converted, StrategyFailed


@contextlib.contextmanager
def _telemetry_off():
    """Keep convert_model from sending usage telemetry over the network.

    OpenVINO's converter reports each conversion to Google Analytics (in a forked process) and
    honours no environment variable, only CI detection or a consent file in the user's home.
    It ships a no-op stub for installs without openvino_telemetry; we swap that in meanwhile.
    """
    stub = importlib.import_module("openvino.tools.ovc.telemetry_stub")
    swapped = []
    for name in ("openvino.tools.ovc.telemetry_utils", "openvino.tools.ovc.convert_impl", "openvino.tools.ovc.utils"):
        module = importlib.import_module(name)
        if hasattr(module, "tm"):
            swapped.append((module, module.tm))
            vars(module)["tm"] = stub
    try:
        yield
    finally:
        for module, original in swapped:
            vars(module)["tm"] = original


def convert(model, what: str = "the model", **options):
    """``openvino.convert_model`` without telemetry; StrategyFailed with OpenVINO's telling line."""
    ov = require("openvino")
    try:
        with _telemetry_off():
            return ov.convert_model(model, **options)
    except Exception as exc:
        raise StrategyFailed(f"openvino.convert_model of {what} failed: {error_line(exc)}") from None


def name_ports(ports, names: list[str], kind: str) -> None:
    """Give each IR port exactly the source's name (converters name some after internal tensors)."""
    if len(ports) != len(names):
        raise StrategyFailed(f"the IR has {len(ports)} {kind}s, the source {len(names)}")
    for port, name in zip(ports, names, strict=True):
        if port.get_names() != {name}:
            port.get_tensor().set_names({name})


def pin_shapes(ov_model, job, keep: dict) -> None:
    """Fix every input axis to the source's size except the axes in ``keep`` ({name: axes}, left -1).

    convert_model leaves a torch.export program's axes dynamic in the IR, even those the program
    traced as constants, and keeps an ONNX file's symbolic axes: an IR must say which sizes it
    really accepts, and that is the example's unless the axis was asked to stay dynamic.
    """
    ov = require("openvino")
    shapes = {}
    for index, spec in enumerate(job.source.inputs):
        dims = [-1 if axis in keep.get(spec.name, []) else size for axis, size in enumerate(concrete_shape(spec))]
        shapes[index] = ov.PartialShape(dims)
    try:
        ov_model.reshape(shapes)
    except Exception as exc:
        raise StrategyFailed(f"cannot fix the IR's input shapes: {error_line(exc)}") from None


def save_ir(ov_model, workdir: Path, inputs: list[str], outputs: list[str]) -> Converted:
    """Name the I/O after the source and write model.xml + model.bin with fp32 weights.

    ``save_model`` compresses weights to fp16 unless told not to; an fp32 export must stay fp32.
    """
    ov = require("openvino")
    name_ports(ov_model.inputs, inputs, "input")
    if outputs:
        name_ports(ov_model.outputs, outputs, "output")
    xml = Path(workdir) / "model.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    return Converted(path=xml, files=[xml.with_suffix(".bin")], versions={"openvino": metadata.version("openvino")})


def error_line(exc: BaseException) -> str:
    """OpenVINO's summary of a failure (its first line is usually a C++ source location)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    details = [line.lstrip("- ") for line in lines if line.startswith("--") or "Conversion is failed for" in line]
    useful = [
        line for line in lines if not line.startswith(("Check ", "Exception from", "FrontEnd API failed", "Summary:"))
    ]
    text = "; ".join(details) if details else (useful or lines or [""])[0]
    return f"{type(exc).__name__}: {text}"[:300]


def onnx_io_names(onnx_path: Path) -> tuple[list[str], list[str]]:
    """The graph's input names (initializers excluded) and output names, in order."""
    onnx = require("onnx")
    return io_names(onnx.load(str(onnx_path), load_external_data=False).graph)


def onnx_to_openvino(
    onnx_path: Path, workdir: Path, inputs=None, outputs=None, job=None, keep: dict | None = None
) -> Converted:
    """Convert an ONNX file to ``workdir/model.xml`` + ``model.bin`` in fp32.

    Ports are named ``inputs``/``outputs`` when given (the source's names), else the ONNX names.
    With ``job``, input axes are pinned to the source's sizes except the requested dynamic axes
    that the ONNX file holds symbolic (or those in ``keep``, when the exporter knows better); those
    stay -1 and are reported in ``dynamic_kept``.
    """
    model = convert(str(onnx_path), "the ONNX file")
    onnx_inputs, onnx_outputs = onnx_io_names(onnx_path)
    kept: dict[str, list[int]] = {}
    notes: list[str] = []
    if job is not None:
        kept, notes = kept_from_shapes(job, onnx_input_shapes(onnx_path), "the ONNX file holds it static")
        if keep is not None:
            kept, notes = keep, []
        pin_shapes(model, job, kept)
    converted = save_ir(model, workdir, inputs or onnx_inputs, outputs or onnx_outputs)
    converted.dynamic_kept, converted.notes = kept, notes
    return converted
