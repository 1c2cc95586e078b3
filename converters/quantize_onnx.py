"""ONNX quantization with onnxruntime's own tools: fp16 conversion, dynamic int8, static QDQ int8.

All three run in this process: they are pure Python over the ONNX graph (no native converter
that could crash), and the result is checked by loading it in onnxruntime before it is kept.
"""

from __future__ import annotations

import re
from pathlib import Path

from ondevice.core.lazy import require
from ondevice.core.scratch import working_directory

from ._common import one_line, package_versions
from .registry import Converted, QuantizeJob, StrategyFailed, quantizer

# onnxruntime's CPU provider lacks float16 kernels for some ops; those stay float32 (with casts
# around them). Found by loading the converted model and reading the op the session refused.
_MAX_BLOCK_ROUNDS = 8
_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")


def _session(path: Path):
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@quantizer(
    "onnx",
    "fp16",
    "onnx-float16",
    order=10,
    summary="onnxruntime float16 conversion, float32 I/O kept, ops without CPU fp16 kernels kept float32",
)
def to_float16(job: QuantizeJob) -> Converted:
    """Weights and compute in float16; inputs and outputs stay float32 so callers feed the same arrays."""
    onnx = require("onnx")
    float16 = require("onnxruntime.transformers.float16")
    out = job.output_path(".onnx")
    blocked = list(float16.DEFAULT_OP_BLOCK_LIST)
    for _ in range(_MAX_BLOCK_ROUNDS):
        model = onnx.load(str(job.float_artifact.path))
        try:
            converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
        except Exception as exc:
            raise StrategyFailed(f"float16 conversion failed: {one_line(exc)}") from None
        onnx.save(converted, str(out))
        try:
            _session(out)
        except Exception as exc:
            missing = _MISSING_KERNEL.search(str(exc))
            if not missing or missing.group(1) in blocked:
                raise StrategyFailed(f"the float16 model does not load in onnxruntime: {one_line(exc)}") from None
            blocked.append(missing.group(1))
            continue
        kept = sorted(set(blocked) - set(float16.DEFAULT_OP_BLOCK_LIST))
        notes = [f"kept float32 (no CPU float16 kernel): {', '.join(kept)}"] if kept else []
        return Converted(out, versions=package_versions("onnx", "onnxruntime"), notes=notes)
    raise StrategyFailed(
        f"the float16 model still lacks CPU kernels after keeping {', '.join(blocked[-_MAX_BLOCK_ROUNDS:])} in float32"
    )


@quantizer(
    "onnx",
    "dynamic-int8",
    "onnx-dynamic-int8",
    order=10,
    summary="onnxruntime quantize_dynamic: int8 weights, activations quantized at run time",
)
def to_dynamic_int8(job: QuantizeJob) -> Converted:
    """int8 weights of MatMul/Gemm/Conv/LSTM-like ops; activations are quantized per call."""
    q = require("onnxruntime.quantization")
    out = job.output_path(".onnx")
    try:
        q.quantize_dynamic(
            str(job.float_artifact.path),
            str(out),
            weight_type=q.QuantType.QInt8,
            reduce_range=_reduce_range(job),
            extra_options={"MatMulConstBOnly": True},
        )
        _session(out)
    except Exception as exc:
        raise StrategyFailed(f"quantize_dynamic failed: {one_line(exc)}") from None
    return Converted(out, versions=package_versions("onnx", "onnxruntime"), notes=[_kernels_note(job)])


@quantizer(
    "onnx",
    "int8",
    "onnx-static-qdq",
    order=10,
    keeps_float=True,
    summary="onnxruntime quantize_static: QDQ format, int8 activations (MinMax over the calibration set) "
    "and per-channel int8 weights; --keep-float nodes through nodes_to_exclude",
)
def to_static_int8(job: QuantizeJob) -> Converted:
    """Static QDQ int8 after onnxruntime's pre-processing (shape inference and graph optimisation)."""
    q = require("onnxruntime.quantization")
    if not job.calibration:
        raise StrategyFailed("static int8 needs calibration samples")
    source = _preprocessed(job)
    out = job.output_path(".onnx")
    static = job.workdir / "static.onnx"
    notes = [f"calibrated on {len(job.calibration)} samples (MinMax)", _kernels_note(job)]
    excluded = _excluded(job, source)
    if excluded:
        notes.append(f"kept in float (nodes_to_exclude): {', '.join(excluded)}")
    try:
        q.quantize_static(
            str(source),
            str(static),
            _reader(q, job.calibration),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=_reduce_range(job),
            activation_type=q.QuantType.QInt8,
            weight_type=q.QuantType.QInt8,
            nodes_to_exclude=excluded,
        )
        if _has_op(static, "LSTM"):
            # QDQ has no LSTM: without this its weights would stay float32 in an "int8" model.
            q.quantize_dynamic(
                str(static),
                str(out),
                weight_type=q.QuantType.QInt8,
                op_types_to_quantize=["LSTM"],
                reduce_range=_reduce_range(job),
                nodes_to_exclude=excluded,
            )
            notes.append("LSTM ops have no static int8 form: int8 weights, activations quantized per call")
        else:
            static.replace(out)
        _session(out)
    except Exception as exc:
        raise StrategyFailed(f"quantize_static failed: {one_line(exc)}") from None
    if source == job.float_artifact.path:
        notes.append("onnxruntime pre-processing failed; quantized the float model as exported")
    return Converted(out, versions=package_versions("onnx", "onnxruntime"), notes=notes)


def _excluded(job: QuantizeJob, model_path: Path) -> list[str]:
    """job.keep_float (node names of the float artifact) as node names of the model quantized.

    Pre-processing keeps node names as a rule; a node it renamed is found by the tensors it writes.
    """
    if not job.keep_float:
        return []
    onnx = require("onnx")
    float_graph = onnx.load(str(job.float_artifact.path), load_external_data=False).graph
    wanted = set(job.keep_float)
    outputs = {o for node in float_graph.node if node.name in wanted for o in node.output if o}
    graph = onnx.load(str(model_path), load_external_data=False).graph
    found = [node.name for node in graph.node if node.name and (node.name in wanted or outputs & set(node.output))]
    if not found:
        raise StrategyFailed(
            f"none of the nodes to keep in float is in the model quantized: {', '.join(sorted(wanted))}"
        )
    return found


def _reduce_range(job: QuantizeJob) -> bool:
    """7-bit weights unless the user's fleet has VNNI: x86 CPUs without it (AVX2, plain AVX-512)
    multiply u8 x s8 pairs into 16-bit sums that saturate, which cost a test Transformer 14 dB of
    SNR under onnxruntime's fused kernels; with 7-bit weights the sums cannot overflow."""
    return job.int8_kernels != "vnni"


def _kernels_note(job: QuantizeJob) -> str:
    if _reduce_range(job):
        return (
            "7-bit weights (reduce_range): exact on every x86 CPU, with or without VNNI "
            "(--int8-kernels vnni keeps 8 bits)"
        )
    return "8-bit weights (--int8-kernels vnni): exact only on CPUs with VNNI or AMX; AVX2-only CPUs may saturate"


def _has_op(path: Path, op_type: str) -> bool:
    onnx = require("onnx")
    return any(node.op_type == op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def _reader(q, samples: list[dict]):
    """A CalibrationDataReader over samples already in the artifact's names and layout."""

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self._iter = iter(samples)

        def get_next(self):
            return next(self._iter, None)

    return Reader()


def _preprocessed(job: QuantizeJob) -> Path:
    """The float model after quant_pre_process, or the float model itself when that step fails."""
    q = require("onnxruntime.quantization")
    out = job.workdir / "preprocessed.onnx"
    # Absolute before the chdir below: the tool runs with the attempt's workdir as working directory,
    # because when its symbolic shape inference is incomplete it saves sym_shape_infer_temp.onnx and
    # <uuid>.data files there and leaves them (in the user's current directory, otherwise).
    source, target = Path(job.float_artifact.path).absolute(), out.absolute()
    try:
        with working_directory(job.workdir):
            q.quant_pre_process(str(source), str(target))
        return out
    except Exception:
        # Symbolic shape inference fails on some exporters' graphs; quantizing without it
        # still works, only with fewer fusions.
        return job.float_artifact.path
