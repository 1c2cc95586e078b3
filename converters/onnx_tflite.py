"""ONNX -> TFLite with onnx2tf, without onnxsim first and with it second.

How onnx2tf is run (a fresh process, offline, on a repaired copy) is in ``_onnx2tf``; why the
strategies come in this order, the graph repairs and the measured results are in docs/routes.md.
"""

from __future__ import annotations

from pathlib import Path

from ondevice.core.specs import concrete_shape

from ._dynamic import all_fixed, onnx_input_shapes
from ._onnx2tf import onnx2tf_convert
from .registry import ConversionJob, Converted, strategy


def _from_onnx_source(job: ConversionJob, simplify: bool) -> Converted:
    """onnx2tf on the source file with every symbolic input axis fixed to the source's size."""
    path = Path(job.source.path or job.source.model)
    symbolic = {n: s for n, s in onnx_input_shapes(path).items() if any(not isinstance(d, int) for d in s)}
    # onnx2tf reads symbolic axes as 1 or fails; the sizes validated are the source's.
    fixed = {spec.name: list(concrete_shape(spec)) for spec in job.source.inputs if spec.name in symbolic}
    converted = onnx2tf_convert(path, job.workdir, simplify=simplify, input_shapes=fixed or None)
    if fixed:
        converted.notes.append(
            "symbolic input axes fixed for onnx2tf: " + "; ".join(f"{n} {s}" for n, s in fixed.items())
        )
    converted.notes += all_fixed(job, "onnx2tf writes a .tflite at fixed sizes")[1]
    return converted


@strategy(
    "onnx",
    "tflite",
    "onnx-tflite-onnx2tf",
    order=10,
    summary="onnx2tf on the ONNX graph as it is (no onnxsim); NHWC inputs, float32",
)
def onnx_tflite_onnx2tf(job: ConversionJob) -> Converted:
    """onnx2tf without simplification: converted every family we tried from a dynamo-exported file."""
    return _from_onnx_source(job, simplify=False)


@strategy(
    "onnx", "tflite", "onnx-tflite-onnx2tf-onnxsim", order=20, summary="onnxsim, then onnx2tf; NHWC inputs, float32"
)
def onnx_tflite_onnx2tf_onnxsim(job: ConversionJob) -> Converted:
    """onnx2tf after onnxsim: rescues graphs such as a TorchScript-exported Transformer encoder."""
    return _from_onnx_source(job, simplify=True)
