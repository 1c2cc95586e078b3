"""What the PyTorch routes share: example inputs as tensors, quiet exporters, the ONNX export
(dynamo or TorchScript) and ``torch.export`` with the requested dynamic axes read back."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

from ondevice.core.lazy import require

from ._common import one_line
from ._dynamic import kept_from_shapes, onnx_input_shapes, requested
from .registry import ConversionJob, StrategyFailed

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


def export_onnx(source, path: Path, dynamo: bool, dynamic: dict | None = None, program=None) -> Path:
    """Export a torch Source to one self-contained ONNX file at ``path``; StrategyFailed on error.

    Input and output names are the source's, so runners can match I/O by name. ``dynamic``
    ({input name: axes}) marks axes dynamic in the TorchScript export; the dynamo exporter takes
    them from ``program`` (see ``export_program``), which it then converts instead of the module.
    """
    torch = require("torch")
    path = Path(path)
    options: dict[str, Any] = {
        "input_names": [s.name for s in source.inputs],
        "output_names": [s.name for s in source.outputs] or None,
        "verbose": False,
    }
    if dynamo:
        # external_data=False keeps weights inside the file; torch still externalises them
        # by itself past the 2 GB protobuf limit. verbose=False stops its progress prints.
        options.update(dynamo=True, external_data=False, report=False, artifacts_dir=str(path.parent))
    else:
        options.update(dynamo=False, opset_version=TORCHSCRIPT_OPSET)
        if dynamic:
            options["dynamic_axes"] = {name: {a: f"{name}_{a}" for a in axes} for name, axes in dynamic.items()}
    try:
        # No torch.no_grad() here: under it an eval TransformerEncoder takes its fused fast path
        # (aten::_transformer_encoder_layer_fwd), which the TorchScript exporter cannot export.
        with quiet_torch_export():
            model = program if program is not None else source.model
            torch.onnx.export(model, example_args(source), str(path), **options)
    except Exception as exc:
        kind = "dynamo" if dynamo else "TorchScript"
        raise StrategyFailed(f"torch.onnx {kind} export failed: {one_line(exc)}") from None
    if not path.exists():
        raise StrategyFailed(f"torch.onnx export wrote no file at {path}")
    return path


def static_program(source):
    """The model's ``torch.export`` program at the example's shapes, traced once per source and shared
    by the routes that start from one (litert-torch, the dynamo ONNX exporter, OpenVINO): each trace of
    a ResNet-18 takes about a second. StrategyFailed when torch.export refuses the model (not kept:
    each route then fails or falls back as before)."""
    program = source.derived.get("static_program")
    if program is None:
        program, _, _ = export_program(source, {})
        source.derived["static_program"] = program
    return program


def export_program(source, dynamic: dict):
    """``torch.export`` the model with the requested axes left to torch; ``(program, kept, notes)``.

    torch specialises an axis whose example size is 0 or 1 (a batch of one would be baked in), so
    such axes are traced at size 2 by repeating the example. ``Dim.AUTO`` lets torch fix an axis
    the model's code pins (a learned position table of length 8, say) instead of failing; what it
    kept is read back from the program. An axis fixed after widening is re-traced at its example size.
    """
    torch = require("torch")
    args = example_args(source)
    names = [spec.name for spec in source.inputs]
    program, kept, reason = _trace(torch, source.model, args, names, dynamic)
    widened_fixed = {
        n: [a for a in axes if args[names.index(n)].shape[a] < 2 and a not in kept.get(n, [])]
        for n, axes in dynamic.items()
    }
    if any(widened_fixed.values()):
        program, kept, _ = _trace(torch, source.model, args, names, kept)
    notes = [
        f"input {n!r} axis {a} fixed to {args[names.index(n)].shape[a]}: "
        f"{reason or 'torch.export found the model needs that size'}"
        for n, axes in dynamic.items()
        for a in axes
        if a not in kept.get(n, [])
    ]
    return program, kept, notes


def _trace(torch, model, args, names, dynamic):
    """One torch.export at widened sizes; falls back to static shapes when widening breaks the model."""
    auto = torch.export.Dim.AUTO
    shapes = tuple(dict.fromkeys(dynamic.get(n, []), auto) or None for n in names)
    widened = tuple(_widen(torch, arg, dynamic.get(n, [])) for n, arg in zip(names, args, strict=True))
    try:
        with quiet_torch_export():
            program = torch.export.export(model, widened, dynamic_shapes=shapes if dynamic else None)
        return program, _symbolic_axes(program, names, dynamic), None
    except Exception as exc:
        if not dynamic:
            raise StrategyFailed(f"torch.export.export failed: {one_line(exc)}") from None
        program, _, _ = _trace(torch, model, args, names, {})
        return program, {}, f"tracing at a second size failed ({one_line(exc)})"


def _widen(torch, tensor, axes):
    # Size 1 becomes 2 by repeating the example; an empty axis stays empty (nothing to repeat).
    for axis in axes:
        if tensor.shape[axis] == 1:
            tensor = torch.cat([tensor, tensor], dim=axis)
    return tensor


def _symbolic_axes(program, names, dynamic) -> dict:
    """Of the requested axes, those the exported program holds symbolic."""
    from torch.fx.experimental.symbolic_shapes import is_concrete_int

    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    kept = {}
    for graph_name, name in zip(program.graph_signature.user_inputs, names, strict=True):
        value = placeholders[graph_name].meta.get("val")
        # A specialised axis can still be a SymInt, one whose value is a constant.
        axes = [a for a in dynamic.get(name, []) if value is not None and not is_concrete_int(value.shape[a])]
        if axes:
            kept[name] = axes
    return kept


def onnx_with_dynamic(job: ConversionJob, path: Path, dynamo: bool) -> tuple[dict, list[str]]:
    """Write the ONNX export honouring ``job.dynamic``; returns ``(dynamic_kept, notes)``."""
    dynamic = requested(job)
    if not dynamic:
        program = None
        if dynamo:
            with contextlib.suppress(StrategyFailed):  # torch.onnx then captures the graph its own ways
                program = static_program(job.source)
        export_onnx(job.source, path, dynamo, program=program)
        return {}, []
    if not dynamo:
        # Tracing records size reads as Shape ops, but a literal size in the code stays baked in:
        # the axes are declared here and only validation at several sizes can prove them.
        export_onnx(job.source, path, dynamo, dynamic=dynamic)
        kept, notes = kept_from_shapes(job, onnx_input_shapes(path), "the TorchScript export kept it static")
        return kept, [*notes, "dynamic axes declared by TorchScript tracing, not proven by the exporter"]
    program, traced, notes = export_program(job.source, dynamic)
    export_onnx(job.source, path, dynamo, program=program)
    kept, _ = kept_from_shapes(job, onnx_input_shapes(path), "")
    kept = {n: [a for a in axes if a in traced.get(n, [])] for n, axes in kept.items() if traced.get(n)}
    return {n: a for n, a in kept.items() if a}, notes
