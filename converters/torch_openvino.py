"""PyTorch -> OpenVINO IR: convert_model of a torch.export program, else of an ONNX export."""

from __future__ import annotations

from ._common import one_line, package_versions
from ._dynamic import kept_from_shapes, ov_input_shapes, requested
from ._openvino import convert, onnx_to_openvino, pin_shapes, save_ir
from ._torch import export_program, onnx_with_dynamic, quiet_torch_export, static_program
from .registry import ConversionJob, Converted, StrategyFailed, strategy

# convert_model(nn.Module) traces with TorchScript and fails on nn.TransformerEncoder
# ("Graphs differed across invocations"), so neither strategy hands it the module itself.


@strategy(
    "torch",
    "openvino",
    "torch-openvino-export",
    order=10,
    summary="openvino.convert_model of a torch.export.export program",
)
def convert_exported(job: ConversionJob) -> Converted:
    """IR from the torch.export graph of the model; requested dynamic axes stay -1 in the IR."""
    dynamic = requested(job)
    try:
        if dynamic:
            program, traced, notes = export_program(job.source, dynamic)
        else:
            program, traced, notes = static_program(job.source), {}, []
    except StrategyFailed:
        raise
    except Exception as exc:
        raise StrategyFailed(f"torch.export.export failed: {one_line(exc)}") from None
    with quiet_torch_export():
        ov_model = convert(program, "the exported program")
    names = [s.name for s in job.source.inputs]
    pin_shapes(ov_model, job, traced)
    kept, _ = kept_from_shapes(job, ov_input_shapes(ov_model, names), "")
    converted = save_ir(ov_model, job.workdir, names, [s.name for s in job.source.outputs])
    converted.versions.update(package_versions("torch"))
    converted.notes, converted.dynamic_kept = notes, kept
    return converted


def _via_onnx(job: ConversionJob, dynamo: bool) -> Converted:
    onnx_path = job.workdir / "intermediate.onnx"
    kept, notes = onnx_with_dynamic(job, onnx_path, dynamo)
    converted = onnx_to_openvino(onnx_path, job.workdir, job=job, keep=kept)
    exporter = "dynamo" if dynamo else "TorchScript"
    converted.versions = {**package_versions("torch", *(["onnxscript"] if dynamo else [])), **converted.versions}
    converted.notes = [*notes, f"converted from the {exporter} ONNX export (intermediate.onnx)"]
    return converted


@strategy(
    "torch",
    "openvino",
    "torch-openvino-onnx",
    order=20,
    summary="ONNX via the dynamo exporter, then openvino.convert_model of the file",
)
def convert_via_onnx(job: ConversionJob) -> Converted:
    """IR from the dynamo ONNX export of the model (the ONNX route's converter, reused)."""
    return _via_onnx(job, dynamo=True)


@strategy(
    "torch",
    "openvino",
    "torch-openvino-onnx-torchscript",
    order=30,
    summary="ONNX via the TorchScript exporter, then openvino.convert_model of the file",
)
def convert_via_torchscript_onnx(job: ConversionJob) -> Converted:
    """IR from the TorchScript ONNX export: the way in for TorchScript (.pt) sources, which
    torch.export and the dynamo exporter refuse."""
    return _via_onnx(job, dynamo=False)
