"""PyTorch -> OpenVINO IR: convert_model of a torch.export program, else of the ONNX export."""
from __future__ import annotations

from ondevice._lazy import require

from ._openvino import convert, save_ir
from .onnx_openvino import onnx_to_openvino
from .registry import ConversionJob, Converted, StrategyFailed, strategy
from .torch_onnx import example_args, export_onnx, one_line, package_versions, quiet_torch_export

# convert_model(nn.Module) traces with TorchScript and fails on nn.TransformerEncoder
# ("Graphs differed across invocations"), so neither strategy hands it the module itself.


@strategy("torch", "openvino", "torch-openvino-export", order=10,
          summary="openvino.convert_model of a torch.export.export program")
def convert_exported(job: ConversionJob) -> Converted:
    """IR from the torch.export graph of the model."""
    torch = require("torch")
    ov = require("openvino")
    try:
        with quiet_torch_export():
            program = torch.export.export(job.source.model, example_args(job.source))
    except Exception as exc:
        raise StrategyFailed(f"torch.export.export failed: {one_line(exc)}") from None
    with quiet_torch_export():
        ov_model = convert(program, "the exported program")
    try:
        # convert_model leaves the program's axes dynamic in the IR; pin the source's shapes.
        ov_model.reshape({i: ov.PartialShape(list(spec.shape)) for i, spec in enumerate(job.source.inputs)})
    except Exception as exc:
        raise StrategyFailed(f"cannot fix the IR's input shapes: {one_line(exc)}") from None
    converted = save_ir(ov_model, job.workdir, [s.name for s in job.source.inputs],
                        [s.name for s in job.source.outputs])
    converted.versions.update(package_versions("torch"))
    return converted


@strategy("torch", "openvino", "torch-openvino-onnx", order=20,
          summary="ONNX via the dynamo exporter, then openvino.convert_model of the file")
def convert_via_onnx(job: ConversionJob) -> Converted:
    """IR from the dynamo ONNX export of the model (the ONNX route's converter, reused)."""
    onnx_path = export_onnx(job.source, job.workdir / "intermediate.onnx", dynamo=True)
    converted = onnx_to_openvino(onnx_path, job.workdir)
    converted.versions = {**package_versions("torch", "onnxscript"), **converted.versions}
    converted.notes.append("converted from the dynamo ONNX export (intermediate.onnx)")
    return converted


@strategy("torch", "openvino", "torch-openvino-onnx-torchscript", order=30,
          summary="ONNX via the TorchScript exporter, then openvino.convert_model of the file")
def convert_via_torchscript_onnx(job: ConversionJob) -> Converted:
    """IR from the TorchScript ONNX export: the way in for TorchScript (.pt) sources, which
    torch.export and the dynamo exporter refuse."""
    onnx_path = export_onnx(job.source, job.workdir / "intermediate.onnx", dynamo=False)
    converted = onnx_to_openvino(onnx_path, job.workdir)
    converted.versions = {**package_versions("torch"), **converted.versions}
    converted.notes.append("converted from the TorchScript ONNX export (intermediate.onnx)")
    return converted
