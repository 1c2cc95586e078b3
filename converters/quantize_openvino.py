"""OpenVINO IR quantization: fp16 weight compression on save, NNCF int8 weight compression and
NNCF post-training int8 quantization over the calibration set.

NNCF runs in a fresh process: it imports torch and sets global state, and its telemetry is
switched off there by NNCF's own variable (nothing may reach the network).
"""

from __future__ import annotations

from importlib import metadata

from ondevice.core.isolate import SIGNAL, IsolatedFailure, call_isolated
from ondevice.core.lazy import require

from ._common import package_versions
from .registry import Converted, ConverterCrashed, QuantizeJob, StrategyFailed, quantizer

_TIMEOUT_S = 900
# NNCF honours this variable only to turn its usage telemetry off (checked in nncf/telemetry).
_NNCF_ENV = {"NNCF_CI": "1"}


def _ir_files(xml) -> list:
    return [xml.with_suffix(".bin")]


@quantizer(
    "openvino",
    "fp16",
    "openvino-compress-fp16",
    order=10,
    summary="openvino.save_model(compress_to_fp16=True): fp16 weights, decompressed to f32 at load",
)
def to_fp16(job: QuantizeJob) -> Converted:
    """The float IR saved again with fp16 weights."""
    ov = require("openvino")
    out = job.output_path(".xml")
    model = ov.Core().read_model(str(job.float_artifact.path))
    ov.save_model(model, str(out), compress_to_fp16=True)
    return Converted(out, files=_ir_files(out), versions={"openvino": metadata.version("openvino")})


@quantizer(
    "openvino",
    "dynamic-int8",
    "openvino-nncf-compress-weights",
    order=10,
    summary="nncf.compress_weights: int8 (asymmetric, per-channel) weights, float activations",
)
def to_int8_weights(job: QuantizeJob) -> Converted:
    """Weight-only int8; the CPU plugin decompresses (or quantizes activations) at run time."""
    return _nncf(job, "compress")


@quantizer(
    "openvino",
    "int8",
    "openvino-nncf-quantize",
    order=10,
    keeps_float=True,
    summary="nncf.quantize: int8 weights and activations (FakeQuantize), MinMax ranges over the calibration "
    "set; --keep-float ops through ignored_scope",
)
def to_int8(job: QuantizeJob) -> Converted:
    """Post-training int8 quantization calibrated on the job's samples."""
    if not job.calibration:
        raise StrategyFailed("int8 quantization needs calibration samples")
    return _nncf(job, "quantize")


def _nncf(job: QuantizeJob, mode: str) -> Converted:
    from ondevice.core.samples import save_samples

    out = job.output_path(".xml")
    samples = job.workdir / "calibration.npz"
    save_samples(samples, job.calibration)
    kwargs = {
        "xml": str(job.float_artifact.path),
        "out": str(out),
        "mode": mode,
        "samples_path": str(samples),
        "input_names": job.input_names,
        "overflow_fix": _overflow_fix(job),
        "ignored": list(job.keep_float),
    }
    try:
        call_isolated("ondevice.converters.quantize_openvino:nncf_worker", kwargs, timeout=_TIMEOUT_S, env=_NNCF_ENV)
    except IsolatedFailure as exc:
        if exc.kind == SIGNAL:
            raise ConverterCrashed(f"NNCF {mode} crashed: {exc.reason}", exc.signal_name) from exc
        raise StrategyFailed(f"NNCF {mode} failed: {exc.reason}") from exc
    notes = (
        [f"calibrated on {len(job.calibration)} samples (MinMax ranges)", _OVERFLOW_NOTES[_overflow_fix(job)]]
        if mode == "quantize"
        else []
    )
    if job.keep_float:
        notes.append(f"kept in float (ignored_scope): {', '.join(job.keep_float)}")
    return Converted(out, files=_ir_files(out), versions=package_versions("openvino", "nncf"), notes=notes)


# NNCF's overflow fix stores weights with 7 significant bits wherever a u8 x s8 product pair could
# overflow 16 bits on CPUs without VNNI (it widens the scale so the int8 grid halves); "disable"
# keeps full 8-bit weights, exact only with VNNI/AMX.
_OVERFLOW_NOTES = {
    "enable": "overflow fix on every layer: exact on every x86 CPU, with or without VNNI (--int8-kernels vnni "
    "keeps 8-bit weights)",
    "disable": "8-bit weights (--int8-kernels vnni): exact only on CPUs with VNNI or AMX; AVX2-only CPUs may saturate",
}


def _overflow_fix(job: QuantizeJob) -> str:
    return "disable" if job.int8_kernels == "vnni" else "enable"


def nncf_worker(
    xml: str,
    out: str,
    mode: str,
    samples_path: str,
    input_names: list,
    overflow_fix: str = "enable",
    ignored: list | None = None,
) -> None:
    """Runs in a fresh process: quantize or compress the IR at ``xml`` and save it at ``out`` (f32 kept);
    ops named in ``ignored`` (friendly names) get no FakeQuantize on their inputs and keep float weights."""
    from pathlib import Path

    from ondevice.core.samples import load_samples_file

    ov = require("openvino")
    nncf = _nncf_module()
    model = ov.Core().read_model(xml)
    if mode == "compress":
        model = nncf.compress_weights(model)
    else:
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        feeds = [[sample[name] for name in input_names] for sample in load_samples_file(Path(samples_path))]
        # Global min/max, as onnxruntime and TFLite calibrate: NNCF's default averages each sample's
        # extremes, which clipped the tails of the test transformer's activations (error 0.12 vs 0.06).
        advanced = AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
            overflow_fix=OverflowFix.ENABLE if overflow_fix == "enable" else OverflowFix.DISABLE,
        )
        # validate=False: a friendly name NNCF folded away (a bias Add merged into its MatMul) is not an error.
        scope = nncf.IgnoredScope(names=list(ignored), validate=False) if ignored else None
        model = nncf.quantize(
            model, nncf.Dataset(feeds), subset_size=len(feeds), advanced_parameters=advanced, ignored_scope=scope
        )
    # An int8 IR keeps its remaining float constants in f32: fp16 would be a second, unasked change.
    ov.save_model(model, out, compress_to_fp16=False)


def _nncf_module():
    try:
        import nncf
    except ImportError as exc:
        raise StrategyFailed(f"nncf is not usable ({exc}); install it with: pip install 'ondevice[openvino]'") from None
    return nncf
