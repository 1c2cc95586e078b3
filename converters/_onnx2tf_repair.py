"""Graph repairs applied to the copy of an ONNX file that onnx2tf converts.

onnx2tf tracks, per tensor, whether it already moved the channel axis last; tensors born inside
the graph by a Reshape that raises the rank (a generator's Linear -> view(N, C, H, W)) stay in
ONNX order, and its ConvTranspose handler assumes the moved order. The .tflite then fails to
load ("TRANSPOSE_CONV failed to prepare: 4 != 16", measured with and without onnxsim). Its
Conv handler does move such a tensor, so a 1x1 Conv with identity weights between the two makes
the graph convert; the identity is exact in float32 (each output adds zeros to one input).
"""
from __future__ import annotations

from pathlib import Path

from ondevice import _lazy

_RAISING = ("Reshape", "Unsqueeze", "Flatten")


def repair_for_onnx2tf(onnx_path: Path) -> list[str]:
    """Apply the repairs to the file in place; returns one line per change (empty: file untouched)."""
    onnx = _lazy.require("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    ranks = _ranks(onnx, model)
    done = _identity_before_conv_transpose(onnx, model.graph, ranks)
    if done:
        onnx.save(model, str(onnx_path))
    return done


def _ranks(onnx, model) -> dict:
    """Tensor name -> rank, from ONNX shape inference (tensors it cannot type are left out)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:   # inference is a help here, not a requirement
        inferred = model.graph
    ranks = {}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    ranks.update({init.name: len(init.dims) for init in model.graph.initializer})
    return ranks


def _identity_before_conv_transpose(onnx, graph, ranks: dict) -> list[str]:
    producers = {out: node for node in graph.node for out in node.output}
    weights = {init.name: init for init in graph.initializer}
    done, nodes = [], []
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "ConvTranspose" and node.input else None
        weight = weights.get(node.input[1]) if source is not None and len(node.input) > 1 else None
        raised = (source is not None and source.op_type in _RAISING and weight is not None
                  and len(weight.dims) == 4 and ranks.get(source.input[0], 4) < 4)
        if raised:
            nodes.extend(_identity_conv(onnx, graph, node, int(weight.dims[0])))
            done.append(f"identity 1x1 Conv before ConvTranspose {node.name or node.output[0]!r} "
                        f"(its input comes from a rank-raising {source.op_type})")
        nodes.append(node)
    if done:
        snapshot = onnx.GraphProto()
        snapshot.node.extend(nodes)
        graph.ClearField("node")
        graph.node.extend(snapshot.node)
    return done


def _identity_conv(onnx, graph, consumer, channels: int) -> list:
    """A Conv computing its input unchanged, spliced in front of ``consumer``'s data input."""
    import numpy as np

    base = f"ondevice_identity_{consumer.output[0]}".replace(":", "_")
    kernel = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    graph.initializer.append(onnx.numpy_helper.from_array(kernel, f"{base}_w"))
    conv = onnx.helper.make_node("Conv", [consumer.input[0], f"{base}_w"], [f"{base}_out"],
                                 name=base, kernel_shape=[1, 1])
    consumer.input[0] = f"{base}_out"
    return [conv]
