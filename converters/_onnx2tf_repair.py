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

Every rewrite goes through ``_onnx_graph`` and reaches If/Loop/Scan bodies as well.
"""

from __future__ import annotations

from pathlib import Path

from ondevice.core import lazy as _lazy

from . import _onnx_graph as og

_RAISING = ("Reshape", "Unsqueeze", "Flatten")


def repair_for_onnx2tf(onnx_path: Path) -> list[str]:
    """Apply the repairs to the file in place, subgraphs included; one line per change (empty: untouched)."""
    onnx = _lazy.require("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)
    done: list[str] = []
    shapes = og.shapes(onnx, model)
    og.rewrite_nodes(onnx, model.graph, _identity_before_conv_transpose(shapes, done))
    # The first rewrite adds tensors; the second reads their shapes too.
    shapes = og.shapes(onnx, model) if done else shapes
    og.rewrite_nodes(onnx, model.graph, _transpose_before_flatten(shapes, done))
    done += _strip_leading_slashes(model.graph)
    if done:
        onnx.save(model, str(onnx_path))
    return done


def _identity_before_conv_transpose(shapes: dict, done: list[str]):
    """ConvTranspose fed by a rank-raising node gets an identity 1x1 Conv in front of its data input."""

    def rewrite(scope: og.Scope, node):
        source = scope.producers.get(node.input[0]) if node.op_type == "ConvTranspose" and node.input else None
        weight = scope.initializers.get(node.input[1]) if source is not None and len(node.input) > 1 else None
        if (
            source is None
            or source.op_type not in _RAISING
            or weight is None
            or len(weight.dims) != 4
            or len(shapes.get(source.input[0]) or [0] * 4) >= 4
        ):
            return None
        done.append(
            f"identity 1x1 Conv before ConvTranspose {node.name or node.output[0]!r} "
            f"(its input comes from a rank-raising {source.op_type})"
        )
        return [_identity_conv(scope, node, int(weight.dims[0])), node]

    return rewrite


def _transpose_before_flatten(shapes: dict, done: list[str]):
    """Reshape(N, C, H*W) -> Transpose(0, 2, 1) becomes Transpose(0, 2, 3, 1) -> Reshape(N, H*W, C)."""
    dropped: set[str] = set()  # output names of the Transposes folded into a rewritten Reshape

    def rewrite(scope: og.Scope, node):
        if node.op_type == "Transpose" and node.output[0] in dropped:
            return []
        users = scope.consumers.get(node.output[0], []) if node.op_type == "Reshape" else []
        after = users[0] if len(users) == 1 and users[0].op_type == "Transpose" else None
        if (
            after is None
            or not _flattens_spatial(shapes.get(node.input[0]), scope.constants.get(node.input[1]))
            or _perm(after) != [0, 2, 1]
            or node.output[0] in scope.outputs
        ):
            return None
        dropped.add(after.output[0])
        done.append(
            f"Reshape {node.name or node.output[0]!r} + Transpose(0, 2, 1) -> Transpose(0, 2, 3, 1) + "
            "Reshape (a flatten of channels-first patches)"
        )
        return _moved_transpose(scope, node, after, shapes[node.input[0]])

    return rewrite


def _strip_leading_slashes(graph) -> list[str]:
    """Node names (not tensor names) without a leading "/", in every graph; kept unique."""
    taken = {node.name for node in og.all_nodes(graph)}
    renamed = 0
    for node in og.all_nodes(graph):
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


def _moved_transpose(scope: og.Scope, reshape, transpose, shape) -> list:
    import numpy as np

    make_node = scope.onnx.helper.make_node
    base = f"ondevice_nhwc_{transpose.output[0]}".replace(":", "_")
    n, c, h, w = shape
    target = scope.add_initializer(np.array([n if n is not None else -1, h * w, c], dtype=np.int64), f"{base}_shape")
    return [
        make_node("Transpose", [reshape.input[0]], [f"{base}_nhwc"], name=f"{base}_t", perm=[0, 2, 3, 1]),
        make_node("Reshape", [f"{base}_nhwc", target], list(transpose.output), name=f"{base}_r"),
    ]


def _identity_conv(scope: og.Scope, consumer, channels: int):
    """A Conv computing its input unchanged, spliced in front of ``consumer``'s data input."""
    import numpy as np

    base = f"ondevice_identity_{consumer.output[0]}".replace(":", "_")
    kernel = scope.add_initializer(np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1), f"{base}_w")
    conv = scope.onnx.helper.make_node(
        "Conv", [consumer.input[0], kernel], [f"{base}_out"], name=base, kernel_shape=[1, 1]
    )
    consumer.input[0] = f"{base}_out"
    return conv
