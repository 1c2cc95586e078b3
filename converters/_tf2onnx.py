"""Keras -> ONNX through tf2onnx, shared by the Keras routes to ONNX and OpenVINO.

tf2onnx 1.17 writes exact GELU as an ``Erfc`` node, which is no ONNX op: onnxruntime and the
ONNX checker refuse the file. ``repair_onnx`` rewrites such nodes into standard ops (with the
``_onnx_graph`` toolkit, subgraphs included), and ``captured_to_initializers`` turns constants
the tf.function captured back into weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ondevice.core.lazy import require

from . import _onnx_graph as og
from ._common import one_line
from ._dynamic import kept_from_shapes, onnx_input_shapes
from ._keras import input_signature, output_names, serving_function
from .registry import ConversionJob, StrategyFailed

OPSET = 17


def _erfc_to_erf(onnx, node, opset: int) -> list:
    """Erfc(x) = 1 - Erf(x); the constant takes x's dtype through CastLike where the opset has it."""
    base = f"ondevice_erfc_{node.output[0]}".replace(":", "_")  # output names are unique, node names need not be
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

    def rewrite(scope: og.Scope, node):
        key = (node.domain or "", node.op_type)
        if key not in _REPAIRS:
            return None
        counts[key] = counts.get(key, 0) + 1
        return _REPAIRS[key][1](onnx, node, opset)

    og.rewrite_nodes(onnx, model_proto.graph, rewrite)
    return model_proto, [f"{key[1]} -> {_REPAIRS[key][0]} x{n}" for key, n in counts.items()]


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
    reason = one_line(exc)
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
        raise StrategyFailed(f"tf2onnx failed: {one_line(exc)}") from None
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


def tf2onnx_versions() -> dict:
    """Versions of the packages this route uses."""
    return {name: require(name).__version__ for name in ("tensorflow", "keras", "tf2onnx", "onnx")}
