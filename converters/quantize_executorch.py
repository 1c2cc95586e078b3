"""ExecuTorch quantization, from the PyTorch source (a .pte is not re-quantized): the pt2e flow with
XNNPACK's quantizer for int8 (calibrated) and dynamic-int8, and an fp16 program for XNNPACK's fp16
kernels. Each result is lowered with the XNNPACK partitioner like the float program.
"""

from __future__ import annotations

import copy

from ondevice.core.lazy import require

from ._common import one_line, package_versions
from ._executorch import export, write_program
from ._torch import example_args
from .registry import Converted, QuantizeJob, StrategyFailed, quantizer

# XNNPACK's int8 GEMM and convolution kernels widen int8 to 16 bits and accumulate in 32 on every
# x86 CPU (no u8 x s8 pair sums that saturate without VNNI), so 8-bit weights are portable here.
_KERNELS_NOTE = "XNNPACK int8 kernels accumulate in 32 bits on every x86 CPU: 8-bit weights for any --int8-kernels"


@quantizer(
    "executorch",
    "int8",
    "executorch-xnnpack-pt2e",
    order=10,
    frameworks=("torch",),
    summary="pt2e: XNNPACKQuantizer (symmetric, per-channel weights, per-tensor activations) "
    "calibrated on the samples, lowered to XNNPACK",
)
def to_int8(job: QuantizeJob) -> Converted:
    """Static int8: activation ranges observed over the calibration samples."""
    if not job.calibration:
        raise StrategyFailed("int8 quantization needs calibration samples")
    converted = _pt2e(job, dynamic=False)
    converted.notes.append(_KERNELS_NOTE)
    if job.int8_io:
        converted.notes.append(
            "--int8-io is TFLite's: the .pte takes and returns float32 (it quantizes on entry to XNNPACK)"
        )
    return converted


@quantizer(
    "executorch",
    "dynamic-int8",
    "executorch-xnnpack-pt2e-dynamic",
    order=10,
    frameworks=("torch",),
    summary="pt2e: XNNPACKQuantizer, dynamic (int8 weights, activations quantized per call), lowered to XNNPACK",
)
def to_dynamic_int8(job: QuantizeJob) -> Converted:
    """Weights int8, activations quantized at run time (XNNPACK quantizes linear layers this way)."""
    return _pt2e(job, dynamic=True)


def _pt2e(job: QuantizeJob, dynamic: bool) -> Converted:
    torch = require("torch")
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e")
    xnnpack = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer")
    args = example_args(job.source)
    config = xnnpack.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    try:
        prepared = pt2e.prepare_pt2e(
            export(job.source.model, args).module(), xnnpack.XNNPACKQuantizer().set_global(config)
        )
        # Dynamic quantization observes nothing ahead of time; one call settles the graph.
        for sample in job.calibration if not dynamic else [None]:
            prepared(*(args if sample is None else [torch.from_numpy(sample[n]) for n in job.input_names]))
        quantized = pt2e.convert_pt2e(prepared)
    except StrategyFailed:
        raise
    except Exception as exc:
        raise StrategyFailed(f"pt2e quantization failed: {one_line(exc)}") from None
    converted = write_program(export(quantized, args), job.source, job.output_path(".pte"), delegate=True)
    converted.versions.update(_versions())
    return converted


@quantizer(
    "executorch",
    "fp16",
    "executorch-xnnpack-fp16",
    order=10,
    frameworks=("torch",),
    summary="the model in float16 behind float32 inputs and outputs, lowered to XNNPACK's fp16 kernels",
)
def to_fp16(job: QuantizeJob) -> Converted:
    """Half-precision weights and compute; the program still takes and returns float32."""
    args = example_args(job.source)
    try:
        wrapped = _half(job.source.model)
    except Exception as exc:
        raise StrategyFailed(f"the model could not be cast to float16: {one_line(exc)}") from None
    converted = write_program(export(wrapped, args), job.source, job.output_path(".pte"), delegate=True)
    converted.notes.append("float16 inside, float32 inputs and outputs (cast on entry and exit)")
    return converted


def _half(model):
    """``model`` in float16 behind float32 inputs and outputs (integer tensors pass unchanged)."""
    torch = require("torch")
    tree_map = torch.utils._pytree.tree_map

    class Half(torch.nn.Module):  # type: ignore[name-defined]  # torch here is the lazily imported module
        def __init__(self, inner):
            super().__init__()
            self.inner = copy.deepcopy(inner).half()

        def forward(self, *inputs):
            cast = lambda t, dtype: t.to(dtype) if t.is_floating_point() else t  # noqa: E731
            result = self.inner(*(cast(t, torch.float16) for t in inputs))
            return tree_map(lambda t: cast(t, torch.float32) if isinstance(t, torch.Tensor) else t, result)

    return Half(model).eval()


def _versions() -> dict:
    return package_versions("torchao")
