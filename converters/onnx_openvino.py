"""ONNX -> OpenVINO IR with ``openvino.convert_model`` (``_openvino.onnx_to_openvino``, shared with the
routes that go through an ONNX file).

OpenVINO's ONNX frontend keeps the graph's input and output names as the IR ports' tensor names,
in the same order; ``save_ir`` makes sure of it. Weights stay fp32 (fp16 is a quantize option).
"""

from __future__ import annotations

from pathlib import Path

from ._openvino import onnx_to_openvino
from .registry import ConversionJob, Converted, strategy


@strategy(
    "onnx", "openvino", "onnx-openvino", order=10, summary="openvino.convert_model of the ONNX file, saved as fp32 IR"
)
def onnx_openvino(job: ConversionJob) -> Converted:
    """Convert the ONNX source to OpenVINO IR."""
    return onnx_to_openvino(Path(job.source.path or job.source.model), job.workdir, job=job)
