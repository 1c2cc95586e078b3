"""Keras → OpenVINO IR: ``convert_model`` of the live Keras model, else of its ONNX export.

``openvino.save_model`` compresses weights to fp16 unless told otherwise; we keep fp32 so the
artifact matches the source (fp16 is a quantize option, not a default).
"""

from __future__ import annotations

import warnings

from ondevice.core.lazy import require

from ._dynamic import kept_from_shapes, ov_input_shapes
from ._keras import batch_note, input_signature, output_names
from ._openvino import convert, onnx_to_openvino, save_ir
from ._tf2onnx import export_onnx, tf2onnx_versions
from .registry import ConversionJob, Converted, strategy


@strategy(
    "keras",
    "openvino",
    "keras-openvino-direct",
    order=10,
    summary="openvino.convert_model of the Keras model at the example's shapes (-1 on --dynamic axes), fp32 IR",
)
def convert_direct(job: ConversionJob) -> Converted:
    """OpenVINO's TensorFlow frontend traces the Keras model itself."""
    tf = require("tensorflow")
    # -1 marks an axis of --dynamic; OpenVINO's TF frontend keeps it dynamic in the IR.
    shapes = [[-1 if d is None else d for d in shape] for _, shape, _ in input_signature(job, keep_dynamic=True)]
    with warnings.catch_warnings():
        # Keras warns that OpenVINO's tracer passes a one-input model a tuple; harmless.
        warnings.simplefilter("ignore", UserWarning)
        ov_model = convert(job.source.model, "the Keras model", input=shapes)
    names = [s.name for s in job.source.inputs]
    kept, notes = kept_from_shapes(job, ov_input_shapes(ov_model, names), "OpenVINO traced it as a constant")
    converted = save_ir(ov_model, job.workdir, names, output_names(job))
    converted.versions["tensorflow"] = tf.__version__
    converted.notes, converted.dynamic_kept = batch_note(job, kept) + notes, kept
    return converted


@strategy(
    "keras",
    "openvino",
    "keras-openvino-onnx",
    order=20,
    summary="tf2onnx export (with graph repair), then openvino.convert_model of the ONNX file",
)
def convert_via_onnx(job: ConversionJob) -> Converted:
    """Through the keras-onnx-tf2onnx export; the ONNX names carry over into the IR."""
    onnx_file = job.workdir / "intermediate.onnx"
    repairs, kept, notes = export_onnx(job, onnx_file)
    try:
        converted = onnx_to_openvino(
            onnx_file, job.workdir, [s.name for s in job.source.inputs], output_names(job), job=job, keep=kept
        )
    finally:
        # The IR holds its own copy of the weights; the ONNX file was only a stepping stone.
        onnx_file.unlink(missing_ok=True)
    converted.versions.update(tf2onnx_versions())
    converted.notes = batch_note(job, kept) + notes + [f"graph repair: {r}" for r in repairs]
    return converted
