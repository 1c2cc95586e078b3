"""ONNX -> OpenVINO IR with ``openvino.convert_model``; ``onnx_to_openvino`` serves the other routes too.

OpenVINO's ONNX frontend keeps the graph's input and output names as the IR ports' tensor names,
in the same order; ``save_ir`` makes sure of it. Weights stay fp32 (fp16 is a quantize option).
"""

from __future__ import annotations

from pathlib import Path

from ondevice.core import lazy as _lazy

from ._dynamic import kept_from_shapes, onnx_input_shapes
from ._openvino import convert, pin_shapes, save_ir
from .registry import ConversionJob, Converted, strategy


def onnx_io_names(onnx_path: Path) -> tuple[list[str], list[str]]:
    """The graph's input names (initializers excluded) and output names, in order."""
    onnx = _lazy.require("onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return [v.name for v in graph.input if v.name not in initializers], [v.name for v in graph.output]


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


@strategy(
    "onnx", "openvino", "onnx-openvino", order=10, summary="openvino.convert_model of the ONNX file, saved as fp32 IR"
)
def onnx_openvino(job: ConversionJob) -> Converted:
    """Convert the ONNX source to OpenVINO IR."""
    return onnx_to_openvino(Path(job.source.path or job.source.model), job.workdir, job=job)
