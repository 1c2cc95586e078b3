"""Keras → ONNX: tf2onnx on a tf.function with repairs; else through a TFLite flatbuffer.

tf2onnx 1.17 writes exact GELU as an ``Erfc`` node, which is no ONNX op: onnxruntime and the
ONNX checker refuse the file. ``repair_onnx`` rewrites such nodes into standard ops, and
``captured_to_initializers`` turns constants the tf.function captured back into weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ondevice.core.lazy import require

from ._dynamic import kept_from_shapes, onnx_input_shapes
from .keras_tflite import batch_note, input_signature, output_names, serving_function
from .registry import ConversionJob, Converted, StrategyFailed, strategy

OPSET = 17


# ---- graph repair ----------------------------------------------------------------------------


def _erfc_to_erf(onnx, node, opset: int) -> list:
    """Erfc(x) = 1 - Erf(x); the constant takes x's dtype through CastLike where the opset has it."""
    base = node.output[0].replace(":", "_")  # output names are unique, node names need not be
    one = onnx.helper.make_tensor(f"{base}/one_value", onnx.TensorProto.FLOAT, [], [1.0])
    nodes = [onnx.helper.make_node("Constant", [], [f"{base}/one_f"], name=f"{base}/one_f", value=one)]
    one_name = f"{base}/one_f"
    if opset >= 15:
        nodes.append(onnx.helper.make_node("CastLike", [one_name, node.input[0]], [f"{base}/one"], name=f"{base}/one"))
        one_name = f"{base}/one"
    nodes.append(onnx.helper.make_node("Erf", [node.input[0]], [f"{base}/erf"], name=f"{base}/erf"))
    nodes.append(onnx.helper.make_node("Sub", [one_name, f"{base}/erf"], list(node.output), name=f"{base}/sub"))
    return nodes


# (domain, op type) -> (what it becomes, rewrite(onnx, node, opset) returning the new nodes).
_REPAIRS = {
    ("", "Erfc"): ("Sub(1, Erf(x))", _erfc_to_erf),
}


def repair_onnx(model_proto):
    """Rewrite nodes ONNX lacks into standard ops; returns ``(model_proto, repairs done)``.

    Each repair is a line such as ``"Erfc -> Sub(1, Erf(x)) x2"``. Subgraphs (Loop, If, Scan
    bodies) are repaired too. The model is changed in place and returned.
    """
    onnx = require("onnx")
    opset = next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    counts: dict[tuple, int] = {}
    _repair_graph(onnx, model_proto.graph, opset, counts)
    return model_proto, [f"{key[1]} -> {_REPAIRS[key][0]} x{n}" for key, n in counts.items()]


def _repair_graph(onnx, graph, opset: int, counts: dict) -> None:
    nodes, changed = [], False
    for node in graph.node:
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                _repair_graph(onnx, sub, opset, counts)
        key = (node.domain or "", node.op_type)
        repair = _REPAIRS.get(key)
        if repair is None:
            nodes.append(node)
            continue
        nodes.extend(repair[1](onnx, node, opset))
        counts[key] = counts.get(key, 0) + 1
        changed = True
    if changed:
        # Copy before clearing: the kept nodes are views into the field being cleared.
        snapshot = onnx.GraphProto()
        snapshot.node.extend(nodes)
        graph.ClearField("node")
        graph.node.extend(snapshot.node)


def order_outputs(model_proto, names: list[str]) -> None:
    """Put the graph outputs in ``names`` order (tf2onnx sorts dict outputs by key)."""
    by_name = {value.name: value for value in model_proto.graph.output}
    if sorted(by_name) != sorted(names):
        return
    ordered = [by_name[name] for name in names]
    copies = [type(value)() for value in ordered]
    for copy, value in zip(copies, ordered, strict=True):
        copy.CopyFrom(value)
    del model_proto.graph.output[:]
    model_proto.graph.output.extend(copies)


def captured_to_initializers(model_proto, captured: dict) -> list[str]:
    """Turn graph inputs that are really captured constants into initializers; returns their names.

    A functional model that computed a tensor at build time (``Embedding(...)(ops.arange(8))``
    for positions) holds it as an eager tensor the tf.function captures; tf2onnx makes such
    captures graph inputs, so the ONNX model asks the caller for a constant.
    """
    onnx = require("onnx")
    turned = []
    for value in list(model_proto.graph.input):
        if value.name in captured:
            model_proto.graph.initializer.append(onnx.numpy_helper.from_array(captured[value.name], value.name))
            model_proto.graph.input.remove(value)
            turned.append(value.name)
    return turned


# ---- conversion ------------------------------------------------------------------------------


def export_onnx(job: ConversionJob, out: Path, keep_dynamic: bool = True) -> tuple[list[str], dict, list[str]]:
    """Write the repaired, checked ONNX file for the job's Keras model.

    Returns ``(repairs done, dynamic_kept, notes)``; the requested dynamic axes are None in the
    traced signature and read back from the ONNX graph.
    """
    onnx = require("onnx")
    outputs = output_names(job)
    proto, captured = _run_tf2onnx(job.source.model, input_signature(job, keep_dynamic), outputs)
    proto, repairs = repair_onnx(proto)
    turned = captured_to_initializers(proto, captured)
    repairs += [f"captured constant {name!r} -> initializer" for name in turned]
    order_outputs(proto, outputs)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx produced an invalid ONNX graph: {_checker_reason(exc, proto)}") from None
    onnx.save(proto, str(out))
    kept, notes = kept_from_shapes(job, onnx_input_shapes(out), "tf2onnx traced it as a constant")
    return repairs, kept, notes


def _checker_reason(exc: BaseException, proto) -> str:
    """The checker's line, naming the TF function a call node left unconverted (e.g. an XLA conv)."""
    calls = [n for n in proto.graph.node if n.op_type in ("StatefulPartitionedCall", "PartitionedCall")]
    called = [a.s.decode() for n in calls for a in n.attribute if a.name == "f"]
    reason = _first_line(exc)
    if called:
        reason += f" (a TF function call tf2onnx could not inline: {', '.join(sorted(set(called)))[:150]})"
    return reason


def _run_tf2onnx(model, inputs: list, outputs: list):
    """tf2onnx on the serving function; returns ``(proto, {placeholder name: captured constant})``."""
    tf = require("tensorflow")
    tf2onnx = require("tf2onnx")
    serve = serving_function(model, inputs, outputs)
    specs = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=name) for name, shape, dtype in inputs]
    # tf2onnx logs every op it leaves unconverted (Erfc, which we repair); the checker names the rest.
    logger = logging.getLogger("tf2onnx")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=OPSET)
        captured = _captured_constants(tf, serve.get_concrete_function(*specs), len(specs))
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx failed: {_first_line(exc)}") from None
    finally:
        logger.setLevel(previous)
    return proto, captured


def _captured_constants(tf, concrete, n_args: int) -> dict:
    # A concrete function's inputs are its arguments followed by one placeholder per capture.
    pairs = zip(concrete.inputs[n_args:], concrete.captured_inputs, strict=True)
    return {
        placeholder.name: value.numpy()
        for placeholder, value in pairs
        if value.dtype != tf.resource and hasattr(value, "numpy")
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def tf2onnx_versions() -> dict:
    """Versions of the packages this route uses."""
    return {name: require(name).__version__ for name in ("tensorflow", "keras", "tf2onnx", "onnx")}


@strategy(
    "keras",
    "onnx",
    "keras-onnx-tf2onnx",
    order=10,
    summary=f"tf2onnx on a tf.function, opset {OPSET}, with graph repair (Erfc, captured constants)",
)
def convert_tf2onnx(job: ConversionJob) -> Converted:
    """tf2onnx in this process (repeated conversions in one process were measured to work)."""
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
    from .keras_tflite import convert_to_tflite

    tflite, tflite_notes = convert_to_tflite(job, job.workdir / "intermediate.tflite")
    try:
        proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=OPSET)
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx.from_tflite failed: {_first_line(exc)}") from None
    finally:
        tflite.unlink(missing_ok=True)
    rename_io(proto, [s.name for s in job.source.inputs], output_names(job))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx.from_tflite produced an invalid ONNX graph: {_first_line(exc)}") from None
    out = job.workdir / "model.onnx"
    onnx.save(proto, str(out))
    notes = [*tflite_notes, "converted from a TFLite flatbuffer (tf2onnx.from_tflite)"]
    return Converted(path=out, versions=tf2onnx_versions(), notes=notes)


def rename_io(model_proto, inputs: list[str], outputs: list[str]) -> None:
    """Name the graph's inputs and outputs after the source, by name where one contains it, else by order.

    A TFLite signature's tensors are called ``serving_default_<name>:0`` and
    ``StatefulPartitionedCall:<i>``; tf2onnx keeps those names.
    """
    graph = model_proto.graph
    initializers = {i.name for i in graph.initializer}
    graph_inputs = [v for v in graph.input if v.name not in initializers]
    renames = {}
    for values, names in ((graph_inputs, inputs), (list(graph.output), outputs)):
        if len(values) != len(names):
            raise StrategyFailed(f"the converted graph has {len(values)} tensors where the source has {len(names)}")
        current = [v.name for v in values]
        by_name = {n: next((c for c in current if _plain(c) == n), None) for n in names}
        pairs = by_name.items() if all(by_name.values()) else zip(names, current, strict=True)
        renames.update({old: new for new, old in pairs if old != new})
    _rename_tensors(graph, renames)


def _plain(name: str) -> str:
    name = name.split(":")[0]
    return name[len("serving_default_") :] if name.startswith("serving_default_") else name


def _rename_tensors(graph, renames: dict) -> None:
    for value in [*graph.input, *graph.output, *graph.value_info]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
