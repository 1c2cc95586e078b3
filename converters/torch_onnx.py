"""PyTorch -> ONNX: the dynamo exporter first, the TorchScript exporter as the fallback."""
from __future__ import annotations

import contextlib
import logging
import re
import warnings
from pathlib import Path

from ondevice._lazy import require

from .registry import ConversionJob, Converted, StrategyFailed, strategy

# The TorchScript exporter's last well-supported opset that onnxruntime, OpenVINO and onnx2tf
# all read; the dynamo exporter picks its own (recommended) default.
TORCHSCRIPT_OPSET = 17


def example_args(source) -> tuple:
    """The source's example inputs as a tuple of torch tensors, in positional order."""
    torch = require("torch")
    feeds = source.example_feeds()
    return tuple(torch.from_numpy(feeds[spec.name].copy()) for spec in source.inputs)


@contextlib.contextmanager
def quiet_torch_export():
    """Hold back the exporters' deprecation warnings and log lines (torchvision probes etc.)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(source, path: Path, dynamo: bool) -> Path:
    """Export a torch Source to one self-contained ONNX file at ``path``; StrategyFailed on error.

    Input and output names are the source's, so runners can match I/O by name.
    """
    torch = require("torch")
    path = Path(path)
    options = dict(input_names=[s.name for s in source.inputs],
                   output_names=[s.name for s in source.outputs] or None, verbose=False)
    if dynamo:
        # external_data=False keeps weights inside the file; torch still externalises them
        # by itself past the 2 GB protobuf limit. verbose=False stops its progress prints.
        options.update(dynamo=True, external_data=False, report=False, artifacts_dir=str(path.parent))
    else:
        options.update(dynamo=False, opset_version=TORCHSCRIPT_OPSET)
    try:
        # No torch.no_grad() here: under it an eval TransformerEncoder takes its fused fast path
        # (aten::_transformer_encoder_layer_fwd), which the TorchScript exporter cannot export.
        with quiet_torch_export():
            torch.onnx.export(source.model, example_args(source), str(path), **options)
    except Exception as exc:
        kind = "dynamo" if dynamo else "TorchScript"
        raise StrategyFailed(f"torch.onnx {kind} export failed: {one_line(exc)}") from None
    if not path.exists():
        raise StrategyFailed(f"torch.onnx export wrote no file at {path}")
    return path


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    # torch colours some messages with ANSI escapes; a log line should not carry them.
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def package_versions(*names: str) -> dict:
    """Installed versions of the named distributions (absent ones are left out)."""
    import importlib.metadata as metadata

    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def _convert(job: ConversionJob, dynamo: bool) -> Converted:
    path = export_onnx(job.source, job.workdir / "model.onnx", dynamo)
    # Only a model past 2 GB gets an external-data file; it travels with the artifact.
    side = sorted(p for p in job.workdir.iterdir() if p.is_file() and p != path)
    packages = ("torch", "onnx", "onnxscript") if dynamo else ("torch", "onnx")
    return Converted(path=path, files=side, versions=package_versions(*packages))


@strategy("torch", "onnx", "torch-onnx-dynamo", order=10,
          summary="torch.onnx.export(dynamo=True): torch.export graph capture, default opset")
def convert_dynamo(job: ConversionJob) -> Converted:
    """ONNX through the dynamo (torch.export-based) exporter."""
    return _convert(job, dynamo=True)


@strategy("torch", "onnx", "torch-onnx-torchscript", order=20,
          summary=f"torch.onnx.export(dynamo=False): TorchScript tracing, opset {TORCHSCRIPT_OPSET}")
def convert_torchscript(job: ConversionJob) -> Converted:
    """ONNX through the legacy TorchScript exporter (deprecated, but traces what dynamo cannot)."""
    return _convert(job, dynamo=False)
