"""Graph repairs applied to the copy of an ONNX file that onnx2tf converts.

onnx2tf moves channel axes last and tracks, per tensor, whether it did; two common patterns
defeat that tracking (both measured, with and without onnxsim), and each has an exact rewrite:

* A Reshape that raises the rank (a generator's Linear -> view(N, C, H, W)) makes a tensor in
  ONNX order, and the ConvTranspose handler assumes the moved order: the .tflite fails to load
  ("TRANSPOSE_CONV failed to prepare: 4 != 16"). Its Conv handler does move such a tensor, so
  a 1x1 Conv with identity weights goes between the two (exact: each output adds zeros to one
  input).
* A patch embedding, Conv -> Reshape(N, C, H*W) -> Transpose(0, 2, 1), converts silently wrong
  when C == H*W (16 patches of width 16: errors near 1), since onnx2tf cannot tell which axis of
  a square tensor it moved. Transpose(0, 2, 3, 1) -> Reshape(N, H*W, C) computes the same
  tensor with the transpose on the 4-D side, where the layout is known.

And one naming repair: the TorchScript exporter names nodes "/3/grouped/Conv"; onnx2tf names the
weights it splits out of a grouped Conv after the node, and refuses a SavedModel whose names start
with "/" ("OP name does not match the following pattern"). Node names lose their leading "/".
"""

from __future__ import annotations

from pathlib import Path

from ondevice.core import lazy as _lazy

_RAISING = ("Reshape", "Unsqueeze", "Flatten")


def repair_for_onnx2tf(onnx_path: Path) -> list[str]:
    """Apply the repairs to the file in place; returns one line per change (empty: file untouched)."""
    onnx = _lazy.require("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = _shapes(onnx, model)
    done = _identity_before_conv_transpose(onnx, model.graph, shapes)
    done += _transpose_before_flatten(onnx, model.graph, _shapes(onnx, model) if done else shapes)
    done += _strip_leading_slashes(model.graph)
    if done:
        onnx.save(model, str(onnx_path))
    return done


def _shapes(onnx, model) -> dict:
    """Tensor name -> shape (an int per static axis, else None), from ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help here, not a requirement
        inferred = model.graph
    shapes = {}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [
                d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim
            ]
    shapes.update({init.name: list(init.dims) for init in model.graph.initializer})
    return shapes


def _replace_nodes(onnx, graph, nodes: list) -> None:
    snapshot = onnx.GraphProto()
    snapshot.node.extend(nodes)
    graph.ClearField("node")
    graph.node.extend(snapshot.node)


def _identity_before_conv_transpose(onnx, graph, shapes: dict) -> list[str]:
    producers = {out: node for node in graph.node for out in node.output}
    weights = {init.name: init for init in graph.initializer}
    done, nodes = [], []
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "ConvTranspose" and node.input else None
        weight = weights.get(node.input[1]) if source is not None and len(node.input) > 1 else None
        if (
            source is not None
            and source.op_type in _RAISING
            and weight is not None
            and len(weight.dims) == 4
            and len(shapes.get(source.input[0]) or [0] * 4) < 4
        ):
            nodes.extend(_identity_conv(onnx, graph, node, int(weight.dims[0])))
            done.append(
                f"identity 1x1 Conv before ConvTranspose {node.name or node.output[0]!r} "
                f"(its input comes from a rank-raising {source.op_type})"
            )
        nodes.append(node)
    if done:
        _replace_nodes(onnx, graph, nodes)
    return done


def _transpose_before_flatten(onnx, graph, shapes: dict) -> list[str]:
    """Reshape(N, C, H*W) -> Transpose(0, 2, 1) becomes Transpose(0, 2, 3, 1) -> Reshape(N, H*W, C)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    constants.update(
        {
            node.output[0]: onnx.numpy_helper.to_array(a.t)
            for node in graph.node
            if node.op_type == "Constant"
            for a in node.attribute
            if a.name == "value"
        }
    )
    outputs = {value.name for value in graph.output}
    done, replaced, nodes = [], {}, []
    for node in graph.node:
        users = consumers.get(node.output[0], []) if node.op_type == "Reshape" else []
        after = users[0] if len(users) == 1 and users[0].op_type == "Transpose" else None
        if (
            after is not None
            and _flattens_spatial(shapes.get(node.input[0]), constants.get(node.input[1]))
            and _perm(after) == [0, 2, 1]
            and node.output[0] not in outputs
        ):
            replaced[after.name or after.output[0]] = True
            nodes.extend(_moved_transpose(onnx, graph, node, after, shapes[node.input[0]]))
            done.append(
                f"Reshape {node.name or node.output[0]!r} + Transpose(0, 2, 1) -> Transpose(0, 2, 3, 1) + "
                "Reshape (a flatten of channels-first patches)"
            )
            continue
        if node.op_type == "Transpose" and replaced.get(node.name or node.output[0]):
            continue
        nodes.append(node)
    if done:
        _replace_nodes(onnx, graph, nodes)
    return done


def _strip_leading_slashes(graph) -> list[str]:
    """Node names (not tensor names) without a leading "/"; kept unique."""
    taken = {node.name for node in graph.node}
    renamed = 0
    for node in graph.node:
        new = node.name.lstrip("/")
        if new != node.name and new and new not in taken:
            taken.add(new)
            node.name = new
            renamed += 1
    return [f"{renamed} node names lost their leading '/'"] if renamed else []


def _perm(node) -> list:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _flattens_spatial(shape, target) -> bool:
    """True when ``target`` reshapes a static (N, C, H, W) into (N, C, H*W)."""
    if shape is None or target is None or len(shape) != 4 or None in shape[1:] or len(target) != 3:
        return False
    n, c, h, w = shape
    return list(target[1:]) in ([c, h * w], [c, -1]) and target[0] in (n, 0, -1)


def _moved_transpose(onnx, graph, reshape, transpose, shape) -> list:
    import numpy as np

    base = f"ondevice_nhwc_{transpose.output[0]}".replace(":", "_")
    n, c, h, w = shape
    target = np.array([n if n is not None else -1, h * w, c], dtype=np.int64)
    graph.initializer.append(onnx.numpy_helper.from_array(target, f"{base}_shape"))
    return [
        onnx.helper.make_node("Transpose", [reshape.input[0]], [f"{base}_nhwc"], name=f"{base}_t", perm=[0, 2, 3, 1]),
        onnx.helper.make_node("Reshape", [f"{base}_nhwc", f"{base}_shape"], list(transpose.output), name=f"{base}_r"),
    ]


def _identity_conv(onnx, graph, consumer, channels: int) -> list:
    """A Conv computing its input unchanged, spliced in front of ``consumer``'s data input."""
    import numpy as np

    base = f"ondevice_identity_{consumer.output[0]}".replace(":", "_")
    kernel = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    graph.initializer.append(onnx.numpy_helper.from_array(kernel, f"{base}_w"))
    conv = onnx.helper.make_node(
        "Conv", [consumer.input[0], f"{base}_w"], [f"{base}_out"], name=base, kernel_shape=[1, 1]
    )
    consumer.input[0] = f"{base}_out"
    return [conv]
