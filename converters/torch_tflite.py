"""PyTorch -> TFLite (LiteRT): litert-torch first, then ONNX exports handed to onnx2tf."""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from pathlib import Path

from ondevice.core.isolate import IsolatedFailure, Prestarted, start_spare, take_spare
from ondevice.core.lazy import is_instance_of, require

from ._common import one_line, package_versions
from ._dynamic import all_fixed
from ._onnx2tf import onnx2tf_convert
from ._torch import example_args, export_onnx, quiet_torch_export, static_program
from .registry import ConversionJob, Converted, StrategyFailed, starts, strategy, warms

# Measured: litert_torch.convert(dynamic_shapes=...) fails in its lowering ("Shapes must be 1D
# sequences of concrete values") on a CNN and an LSTM, and the onnx2tf strategies convert a static
# ONNX export; a .tflite from this route keeps the example's sizes.
_TFLITE_STATIC = "the TFLite strategies of this route convert at the example's sizes"


@strategy(
    "torch",
    "tflite",
    "torch-tflite-litert",
    order=10,
    summary="litert_torch.convert: torch.export lowered straight to TFLite, NCHW I/O kept",
)
def convert_litert(job: ConversionJob) -> Converted:
    """TFLite through litert-torch: in the process ``start_litert`` began with the export, else in
    this one (it needs no TensorFlow, and repeated conversions in one process, mixed with ONNX and
    OpenVINO exports, measured clean)."""
    path = job.workdir / "model.tflite"
    notes = ["signature and tensor names set to the source's (litert-torch calls them args_N / output_N)"]
    if job.early is not None:
        notes.append(_collect(job.early))
    else:
        litert_torch = require("litert_torch")
        args, kwargs = _sample_inputs(job.source)
        try:
            with _litert_progress_off(), quiet_torch_export():
                edge_model = litert_torch.convert(job.source.model, args, kwargs)
                edge_model.export(str(path))
        except Exception as exc:
            raise StrategyFailed(f"litert_torch.convert failed: {one_line(exc)}") from None
    if not path.exists():
        raise StrategyFailed("litert_torch wrote no .tflite file")
    name_after_source(path, [s.name for s in job.source.inputs], [s.name for s in job.source.outputs])
    if any(spec.dtype in ("int64", "float64") for spec in job.source.inputs):
        # litert-torch downcasts 64-bit tensors unless enable_x64; most runtimes lack them.
        notes.append("64-bit inputs and outputs become int32 / float32 in the .tflite")
    _, fixed = all_fixed(job, _TFLITE_STATIC)
    return Converted(
        path=path, channels_last=False, notes=notes + fixed, versions=package_versions("torch", "litert-torch")
    )


# litert-torch's import (torch, JAX, ml_dtypes: about 5 s) and conversion run in a process started
# with the export, while this one exports the other targets; the model goes there as the
# torch.export program, the one thing that carries a module built by user code across processes.
_EARLY_TIMEOUT_S = 3600
_PROGRAM_FILE, _INPUTS_FILE = "program.pt2", "example_inputs.npz"
_PROGRESS_ENV = "LITERT_TORCH_SHOW_PROGRESS"  # litert-torch prints a progress tree unless it says "n"


_PRELOAD = ("torch", "litert_torch", __name__)


def _process_env() -> dict:
    return {_PROGRESS_ENV: os.environ.get(_PROGRESS_ENV, "n")}


@warms("torch-tflite-litert")
def warm_litert() -> None:
    """Begin importing litert-torch in the process ``start_litert`` will take, before the source is loaded."""
    start_spare(_PRELOAD, _process_env())


@starts("torch-tflite-litert")
def start_litert(job: ConversionJob) -> Prestarted:
    """Start litert-torch's conversion of ``job`` in a process of its own (the one ``warm_litert`` began,
    if it did); ``convert_litert`` collects it."""
    import numpy as np

    env = _process_env()
    process = take_spare(_PRELOAD, env) or Prestarted(preload=_PRELOAD, env=env)
    try:
        torch = require("torch")
        args = example_args(job.source)
        program = static_program(job.source)
        torch.export.save(program, str(job.workdir / _PROGRAM_FILE))
        np.savez(job.workdir / _INPUTS_FILE, **{f"arg{i}": arg.numpy() for i, arg in enumerate(args)})
        process.send(f"{__name__}:convert_program", {"workdir": str(job.workdir.resolve())})
    except BaseException:
        process.close()
        raise
    return process


def convert_program(workdir: str) -> dict:
    """Convert the saved program in ``workdir`` to ``workdir/model.tflite``; runs in ``start_litert``'s process."""
    import numpy as np

    started = time.perf_counter()
    torch = require("torch")
    litert_torch = require("litert_torch")
    folder = Path(workdir)
    module = torch.export.load(str(folder / _PROGRAM_FILE)).module()
    with np.load(folder / _INPUTS_FILE) as data:
        args = tuple(torch.from_numpy(data[f"arg{i}"]) for i in range(len(data.files)))
    try:
        with quiet_torch_export():
            litert_torch.convert(module, args).export(str(folder / "model.tflite"))
    except Exception as exc:
        raise StrategyFailed(f"litert_torch.convert failed: {one_line(exc)}") from None
    return {"seconds": round(time.perf_counter() - started, 3)}


def _collect(process: Prestarted) -> str:
    """Wait for ``start_litert``'s conversion; the note saying where it ran, or StrategyFailed."""
    try:
        facts = process.result(timeout=_EARLY_TIMEOUT_S)
    except IsolatedFailure as exc:
        if exc.raised(StrategyFailed):
            raise StrategyFailed(exc.message) from None
        raise StrategyFailed(f"litert-torch's conversion process failed: {exc.reason}") from None
    started = "before the source was loaded" if process.spare else "with the export"
    return (
        f"converted from the torch.export program in a separate process started {started} "
        f"({facts['seconds']:.1f} s there, alongside the other targets)"
    )


def name_after_source(path, inputs: list[str], outputs: list[str]) -> None:
    """Rename ``args_<i>`` / ``output_<i>`` signature entries and their tensors to the i-th source name.

    litert-torch numbers positional inputs and the flattened return values in order, so the
    index is the source's position; named entries (keyword inputs) keep their names. With the
    tensors named too, a runner matches outputs by name instead of by order. Uses LiteRT's own
    flatbuffer tools: this route stays free of TensorFlow.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    for signature in model.signatureDefs or []:
        tensors = model.subgraphs[signature.subgraphIndex].tensors
        for items, names, prefix in ((signature.inputs, inputs, "args_"), (signature.outputs, outputs, "output_")):
            for item in items or []:
                key = item.name.decode() if isinstance(item.name, bytes) else str(item.name)
                index = key[len(prefix) :]
                if key.startswith(prefix) and index.isdigit() and int(index) < len(names):
                    item.name = names[int(index)].encode()
                tensors[item.tensorIndex].name = item.name
    flatbuffer_utils.write_model(model, str(path))


def _sample_inputs(source) -> tuple[tuple, dict | None]:
    """Positional args, or keyword args when the source's input names are forward()'s own.

    litert-torch names a signature input after its keyword (else ``args_N``), so keywords keep
    the source's names in the .tflite file; only names forward() really takes can be keywords.
    """
    args = example_args(source)
    names = [spec.name for spec in source.inputs]
    if is_instance_of(source.model, "torch.fx", "GraphModule"):
        # A .pt2's module() shows named parameters but its input spec accepts positions only.
        return args, None
    try:
        params = list(inspect.signature(source.model.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return args, None
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional[: len(names)] != names or any(p.kind == p.POSITIONAL_ONLY for p in params[: len(names)]):
        return args, None
    return (), dict(zip(names, args, strict=True))


@contextlib.contextmanager
def _litert_progress_off():
    """litert-torch prints a progress tree to stdout unless LITERT_TORCH_SHOW_PROGRESS says no."""
    if _PROGRESS_ENV in os.environ:  # the user chose; leave it
        yield
        return
    os.environ[_PROGRESS_ENV] = "n"
    try:
        yield
    finally:
        os.environ.pop(_PROGRESS_ENV, None)


def _via_onnx2tf(job: ConversionJob, dynamo: bool) -> Converted:
    """Export ONNX into the workdir, then run onnx2tf on it in its own process (channel-last I/O)."""
    onnx_path = export_onnx(job.source, job.workdir / "intermediate.onnx", dynamo)
    # onnxsim slows onnx2tf 2-3x and adds nothing on dynamo files, but it is what lets the
    # TorchScript export of a Transformer convert (measured); so only that fallback uses it.
    converted = onnx2tf_convert(onnx_path, job.workdir, simplify=not dynamo)
    exporter = "dynamo" if dynamo else "TorchScript"
    converted.notes.append(f"converted by onnx2tf from the {exporter} ONNX export (intermediate.onnx)")
    converted.versions = {**package_versions("torch", "onnx"), **converted.versions}
    converted.notes += all_fixed(job, _TFLITE_STATIC)[1]
    return converted


@strategy(
    "torch",
    "tflite",
    "torch-tflite-onnx2tf",
    order=20,
    summary="dynamo ONNX export, then onnx2tf in a subprocess (channel-last I/O)",
)
def convert_onnx2tf(job: ConversionJob) -> Converted:
    """TFLite from the dynamo ONNX export through onnx2tf."""
    return _via_onnx2tf(job, dynamo=True)


@strategy(
    "torch",
    "tflite",
    "torch-tflite-onnx2tf-torchscript",
    order=30,
    summary="TorchScript ONNX export, then onnx2tf in a subprocess (channel-last I/O)",
)
def convert_onnx2tf_torchscript(job: ConversionJob) -> Converted:
    """TFLite from the TorchScript ONNX export through onnx2tf."""
    return _via_onnx2tf(job, dynamo=False)
