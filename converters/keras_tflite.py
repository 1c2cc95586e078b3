"""Keras → TFLite (LiteRT): TFLiteConverter on a fixed-batch concrete function, in a subprocess.

Why a concrete function at fixed sizes and a fresh process: see ``_keras`` and docs/routes.md.
"""

from __future__ import annotations

from ._dynamic import all_fixed
from ._keras import TFLITE_STATIC, batch_note, run_inprocess, run_isolated
from .registry import ConversionJob, Converted, strategy


def _convert_isolated(job: ConversionJob, mode: str) -> Converted:
    out = job.workdir / "model.tflite"
    versions = run_isolated(job, mode, out)
    notes = batch_note(job) if mode == "concrete" else []
    return Converted(path=out, versions=versions, notes=notes + all_fixed(job, TFLITE_STATIC)[1])


@strategy(
    "keras",
    "tflite",
    "keras-tflite-converter",
    order=10,
    summary="TFLiteConverter on a fixed-shape concrete function, in a subprocess (signature names kept)",
)
def convert_concrete(job: ConversionJob) -> Converted:
    """Fixed-shape concrete function: converts recurrent models and keeps Keras I/O names."""
    return _convert_isolated(job, "concrete")


@strategy(
    "keras",
    "tflite",
    "keras-tflite-keras-model",
    order=20,
    summary="TFLiteConverter.from_keras_model, in a subprocess (outputs named output_N)",
)
def convert_keras_model(job: ConversionJob) -> Converted:
    """The converter's own Keras entry point; fails on recurrent models whose batch axis is free."""
    return _convert_isolated(job, "keras")


@strategy(
    "keras",
    "tflite",
    "keras-tflite-inprocess",
    order=30,
    summary="fixed-batch concrete function converted in this process (models that cannot be saved)",
)
def convert_inprocess(job: ConversionJob) -> Converted:
    """Last resort for models a fresh process cannot reload; a converter crash here is not contained."""
    out = job.workdir / "model.tflite"
    versions = run_inprocess(job, out)
    return Converted(path=out, versions=versions, notes=batch_note(job) + all_fixed(job, TFLITE_STATIC)[1])
