"""Keras → ONNX: tf2onnx on a fixed-shape tf.function, then a repair pass for ops ONNX lacks.

tf2onnx 1.17 writes exact GELU as an ``Erfc`` node, which is no ONNX op: onnxruntime and the
ONNX checker refuse the file. ``repair_onnx`` rewrites such nodes into standard ops.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ondevice._lazy import require

from .keras_tflite import batch_note, input_signature, output_names, serving_function
from .registry import ConversionJob, Converted, StrategyFailed, strategy

OPSET = 17


# ---- graph repair ----------------------------------------------------------------------------

def _erfc_to_erf(onnx, node, opset: int) -> list:
    """Erfc(x) = 1 - Erf(x); the constant takes x's dtype through CastLike where the opset has it."""
    base = node.output[0].replace(":", "_")   # output names are unique, node names need not be
    one = onnx.helper.make_tensor(f"{base}/one_value", onnx.TensorProto.FLOAT, [], [1.0])
    nodes = [onnx.helper.make_node("Constant", [], [f"{base}/one_f"], name=f"{base}/one_f", value=one)]
    one_name = f"{base}/one_f"
    if opset >= 15:
        nodes.append(onnx.helper.make_node("CastLike", [one_name, node.input[0]], [f"{base}/one"],
                                           name=f"{base}/one"))
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
    for copy, value in zip(copies, ordered):
        copy.CopyFrom(value)
    del model_proto.graph.output[:]
    model_proto.graph.output.extend(copies)


# ---- conversion ------------------------------------------------------------------------------

def export_onnx(job: ConversionJob, out: Path) -> list[str]:
    """Write the repaired, checked ONNX file for the job's Keras model; returns the repairs done."""
    onnx = require("onnx")
    outputs = output_names(job)
    proto = _run_tf2onnx(job.source.model, input_signature(job), outputs)
    proto, repairs = repair_onnx(proto)
    order_outputs(proto, outputs)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx produced an invalid ONNX graph: {_first_line(exc)}") from None
    onnx.save(proto, str(out))
    return repairs


def _run_tf2onnx(model, inputs: list, outputs: list):
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
    except Exception as exc:
        raise StrategyFailed(f"tf2onnx failed: {_first_line(exc)}") from None
    finally:
        logger.setLevel(previous)
    return proto


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def tf2onnx_versions() -> dict:
    """Versions of the packages this route uses."""
    return {name: require(name).__version__ for name in ("tensorflow", "keras", "tf2onnx", "onnx")}


@strategy("keras", "onnx", "keras-onnx-tf2onnx", order=10,
          summary=f"tf2onnx on a fixed-shape tf.function, opset {OPSET}, with graph repair (Erfc)")
def convert_tf2onnx(job: ConversionJob) -> Converted:
    """tf2onnx in this process (repeated conversions in one process were measured to work)."""
    out = job.workdir / "model.onnx"
    repairs = export_onnx(job, out)
    notes = batch_note(job) + [f"graph repair: {r}" for r in repairs]
    return Converted(path=out, versions=tf2onnx_versions(), notes=notes)
