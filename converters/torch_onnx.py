"""PyTorch -> ONNX: the dynamo exporter first, the TorchScript exporter as the fallback."""

from __future__ import annotations

from ._common import package_versions
from ._torch import TORCHSCRIPT_OPSET, onnx_with_dynamic
from .registry import ConversionJob, Converted, strategy


def _convert(job: ConversionJob, dynamo: bool) -> Converted:
    path = job.workdir / "model.onnx"
    kept, notes = onnx_with_dynamic(job, path, dynamo)
    # Only a model past 2 GB gets an external-data file; it travels with the artifact.
    side = sorted(p for p in job.workdir.iterdir() if p.is_file() and p != path)
    packages = ("torch", "onnx", "onnxscript") if dynamo else ("torch", "onnx")
    return Converted(path=path, files=side, versions=package_versions(*packages), notes=notes, dynamic_kept=kept)


@strategy(
    "torch",
    "onnx",
    "torch-onnx-dynamo",
    order=10,
    summary="torch.onnx.export(dynamo=True): torch.export graph capture, default opset",
)
def convert_dynamo(job: ConversionJob) -> Converted:
    """ONNX through the dynamo (torch.export-based) exporter."""
    return _convert(job, dynamo=True)


@strategy(
    "torch",
    "onnx",
    "torch-onnx-torchscript",
    order=20,
    summary=f"torch.onnx.export(dynamo=False): TorchScript tracing, opset {TORCHSCRIPT_OPSET}",
)
def convert_torchscript(job: ConversionJob) -> Converted:
    """ONNX through the legacy TorchScript exporter (deprecated, but traces what dynamo cannot)."""
    return _convert(job, dynamo=False)
