"""Keras → ONNX: tf2onnx on a tf.function with graph repair (``_tf2onnx``); else through a TFLite flatbuffer."""

from __future__ import annotations

from pathlib import Path

from ondevice.core.lazy import require

from . import _onnx_graph as og
from ._common import one_line
from ._keras import batch_note, convert_to_tflite, output_names
from ._tf2onnx import OPSET, export_onnx, tf2onnx_versions
from .registry import ConversionJob, Converted, StrategyFailed, strategy


@strategy(
    "keras",
    "onnx",
    "keras-onnx-tf2onnx",
    order=10,
    summary=f"tf2onnx on a tf.function, opset {OPSET}, with graph repair (Erfc, captured constants)",
)
def convert_tf2onnx(job: ConversionJob) -> Converted:
    """tf2onnx in this process (repeated conversions in one process were measured to work)."""
    grouped = grouped_convolutions(job.source.model)
    if grouped:
        # Not attempted: the result is known, and on a large model the attempt is the run's peak
        # memory (ConvNeXtLarge: tf2onnx's grappler pass passed 24 GB before the graph was rejected).
        raise StrategyFailed(
            f"not attempted: {len(grouped)} grouped convolution(s) (first: {grouped[0]!r}), which Keras on "
            "TensorFlow runs as XLA-compiled function calls that tf2onnx leaves unconverted"
        )
    out = job.workdir / "model.onnx"
    repairs, kept, notes = export_onnx(job, out)
    notes = batch_note(job, kept) + notes + [f"graph repair: {r}" for r in repairs]
    return Converted(path=out, versions=tf2onnx_versions(), notes=notes, dynamic_kept=kept)


@strategy(
    "keras",
    "onnx",
    "keras-onnx-tflite",
    order=20,
    summary="TFLiteConverter (in a subprocess), then tf2onnx.from_tflite; fixed shapes",
)
def convert_via_tflite(job: ConversionJob) -> Converted:
    """Through the TFLite flatbuffer: TF's converter lowers what tf2onnx cannot read in a TF
    graph (Keras runs grouped convolutions as XLA-compiled function calls, left as
    StatefulPartitionedCall nodes), and tf2onnx reads TFLite builtins."""
    onnx = require("onnx")
    tf2onnx = require("tf2onnx")
    tflite, tflite_notes = convert_to_tflite(job, job.workdir / "intermediate.tflite")
    unreadable = unreadable_tflite_ops(tflite)
    if unreadable:
        tflite.unlink(missing_ok=True)
        # Not attempted: tf2onnx would leave these ops in the graph, which the ONNX checker then refuses,
        # and its optimizer copies the whole graph, weights included, on the way (ConvNeXtLarge: past 24 GB).
        raise StrategyFailed(
            f"not attempted: the TFLite flatbuffer holds {', '.join(unreadable)}, which tf2onnx.from_tflite "
            f"{'has no handler' if len(unreadable) == 1 else 'have no handlers'} for"
        )
    try:
        proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=OPSET)
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx.from_tflite failed: {one_line(exc)}") from None
    finally:
        tflite.unlink(missing_ok=True)
    rename_io(proto, [s.name for s in job.source.inputs], output_names(job))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx.from_tflite produced an invalid ONNX graph: {one_line(exc)}") from None
    out = job.workdir / "model.onnx"
    onnx.save(proto, str(out))
    notes = [*tflite_notes, "converted from a TFLite flatbuffer (tf2onnx.from_tflite)"]
    return Converted(path=out, versions=tf2onnx_versions(), notes=notes)


def unreadable_tflite_ops(path) -> list[str]:
    """The builtin ops of a .tflite file that tf2onnx has no handler for, as tf2onnx names them (``TFL_GELU``).

    Reads the flatbuffer's operator codes only; Flex and other custom ops are left to tf2onnx.
    """
    require("tf2onnx.convert")  # registers the TFLite handlers
    handler = require("tf2onnx.handler")
    model_class = require("tf2onnx.tflite.Model").Model
    lookup_enum = require("tf2onnx.tflite_utils").lookup_enum
    model = model_class.GetRootAsModel(bytearray(Path(path).read_bytes()), 0)
    known = {name for opsets in handler.tf_op.get_opsets().values() for table in opsets for name in table}
    found = set()
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        name = lookup_enum(code.DeprecatedBuiltinCode(), "BuiltinOperator")
        if name == "PLACEHOLDER_FOR_GREATER_OP_CODES":
            name = lookup_enum(code.BuiltinCode(), "BuiltinOperator")
        if name != "CUSTOM" and f"TFL_{name}" not in known:
            found.add(f"TFL_{name}")
    return sorted(found)


def grouped_convolutions(model) -> list[str]:
    """Names of the convolution layers with ``groups`` > 1, nested models included.

    Keras 3's TensorFlow backend runs such a convolution through a ``jit_compile=True`` function
    (grouped convolutions are broken on CPU without XLA); tf2onnx cannot inline that call.
    """
    found, todo = [], list(getattr(model, "layers", []))
    while todo:
        layer = todo.pop(0)
        if getattr(layer, "groups", 1) > 1 and hasattr(layer, "kernel_size"):
            found.append(layer.name)
        todo += getattr(layer, "layers", [])
    return found


def rename_io(model_proto, inputs: list[str], outputs: list[str]) -> None:
    """Name the graph's inputs and outputs after the source, by name where one contains it, else by order.

    A TFLite signature's tensors are called ``serving_default_<name>:0`` and
    ``StatefulPartitionedCall:<i>``; tf2onnx keeps those names.
    """
    graph = model_proto.graph
    renames = {}
    for current, names in zip(og.io_names(graph), (inputs, outputs), strict=True):
        if len(current) != len(names):
            raise StrategyFailed(f"the converted graph has {len(current)} tensors where the source has {len(names)}")
        by_name = {n: next((c for c in current if _plain(c) == n), None) for n in names}
        pairs = by_name.items() if all(by_name.values()) else zip(names, current, strict=True)
        renames.update({old: new for new, old in pairs if old != new})
    og.rename_tensors(graph, renames)


def _plain(name: str) -> str:
    name = name.split(":")[0]
    return name[len("serving_default_") :] if name.startswith("serving_default_") else name
