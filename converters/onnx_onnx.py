"""ONNX -> ONNX: the ONNX target of an ONNX source is the source file itself, checked and copied."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ondevice.core import lazy as _lazy

from ._common import one_line
from ._dynamic import kept_from_shapes, onnx_input_shapes
from ._onnx_graph import copy_onnx
from .registry import ConversionJob, Converted, StrategyFailed, strategy


@strategy("onnx", "onnx", "onnx-copy", order=10, summary="the ONNX source file itself, validated with onnx.checker")
def onnx_copy(job: ConversionJob) -> Converted:
    """Check the source ONNX file and copy it to ``model.onnx``."""
    onnx = _lazy.require("onnx")
    source = Path(job.source.path or job.source.model)
    dest = job.workdir / "model.onnx"
    files = copy_onnx(source, dest)
    try:
        # By path, so models over 2 GB (external data) are checked too.
        onnx.checker.check_model(str(dest))
    except Exception as exc:
        raise StrategyFailed(f"onnx.checker rejected {source.name}: {one_line(exc)}") from None
    kept, notes = kept_from_shapes(
        job, onnx_input_shapes(dest), "the ONNX file holds it static (the copy cannot change the graph)"
    )
    return Converted(
        path=dest, files=files, versions={"onnx": metadata.version("onnx")}, notes=notes, dynamic_kept=kept
    )
