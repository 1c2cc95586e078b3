"""ONNX -> ONNX: the ONNX target of an ONNX source is the source file itself, checked and copied."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

from ondevice.core import lazy as _lazy

from ._dynamic import kept_from_shapes, onnx_input_shapes
from .registry import ConversionJob, Converted, StrategyFailed, strategy

_DATA_NAME = "model.onnx.data"


def has_external_data(onnx_path: Path) -> bool:
    """True when the ONNX file keeps some tensors in side files (its bytes alone are not the model)."""
    onnx = _lazy.require("onnx")
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(uses_external_data(t) for t in model.graph.initializer)


def copy_onnx(onnx_path: Path, dest: Path) -> list[Path]:
    """Copy an ONNX model to ``dest``, gathering external data into one side file; returns the side files."""
    onnx = _lazy.require("onnx")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not has_external_data(onnx_path):
        # A byte copy keeps the file exactly as the user gave it (its hash included).
        shutil.copyfile(onnx_path, dest)
        return []
    # Side files are named relative to the source folder; re-save so the copy is self-contained.
    model = onnx.load(str(onnx_path))
    data = dest.with_name(_DATA_NAME)
    onnx.save_model(model, str(dest), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    return [data]


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
        raise StrategyFailed(f"onnx.checker rejected {source.name}: {_first_line(exc)}") from None
    kept, notes = kept_from_shapes(
        job, onnx_input_shapes(dest), "the ONNX file holds it static (the copy cannot change the graph)"
    )
    return Converted(
        path=dest, files=files, versions={"onnx": metadata.version("onnx")}, notes=notes, dynamic_kept=kept
    )


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
