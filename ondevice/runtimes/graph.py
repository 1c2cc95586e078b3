"""A float artifact's graph as plain nodes: what ``--keep-float`` needs to name the nodes of one layer.

Each reader returns ``Node`` items in execution order: the name the target's quantizer knows the node
by (ONNX node name, OpenVINO friendly name, TFLite first output tensor name: the op's scope for
ai-edge-quantizer), the names ``capture`` gives its outputs, the tensors it reads and writes, and the
float constants (weights) it reads, with their bytes. Constant-only subgraphs (a weight's Convert or
Transpose) are folded into the node that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core import lazy as _lazy


@dataclass(frozen=True)
class Node:
    """One op: the name its quantizer takes, its captured output names, tensors in and out, weights read."""

    name: str
    op_type: str
    labels: tuple  # the names capture.py gives this op's outputs
    inputs: tuple  # non-constant tensors read
    outputs: tuple  # tensors written
    weights: dict = field(default_factory=dict)  # float constant name -> bytes


def read(path, target: str) -> list[Node]:
    """The nodes of the float artifact at ``path`` (an .onnx, .tflite or OpenVINO .xml)."""
    readers = {"onnx": _onnx, "tflite": _tflite, "openvino": _openvino}
    if target not in readers:
        raise ValueError(f"no graph reader for {target}")
    return readers[target](str(path))


def total_weight_bytes(nodes: list[Node]) -> int:
    """Bytes of every float constant the graph reads, each counted once."""
    seen = {}
    for node in nodes:
        seen.update(node.weights)
    return int(sum(seen.values()))


def region(nodes: list[Node], label: str, stops: set) -> list[Node]:
    """The nodes that compute the captured tensor ``label`` from the tensors in ``stops`` (other layers'
    outputs) and the graph inputs: one layer's share of the graph, walked backwards from its output."""
    producer = {out: node for node in nodes for out in node.outputs}
    start = next((node for node in nodes if label in node.labels), None)
    if start is None:
        return []
    found, todo = {start.name: start}, list(start.inputs)
    while todo:
        tensor = todo.pop()
        node = producer.get(tensor)
        if node is None or node.name in found or any(lab in stops for lab in node.labels):
            continue
        found[node.name] = node
        todo.extend(node.inputs)
    return [node for node in nodes if node.name in found]


# ---- ONNX ------------------------------------------------------------------------------------

_ONNX_FLOAT = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def _onnx(path: str) -> list[Node]:
    onnx = _lazy.require("onnx")
    graph = onnx.load(path).graph
    weights = {init.name: _onnx_bytes(onnx, init) for init in graph.initializer if init.data_type in _ONNX_FLOAT}
    constant = {init.name for init in graph.initializer}
    folded: dict[str, dict[str, int]] = {}  # constant tensor -> the float constants it is made of
    nodes = []
    for index, node in enumerate(graph.node):
        reads = [i for i in node.input if i]
        if node.op_type == "Constant" or all(i in constant for i in reads):
            constant.update(node.output)
            made = _onnx_constant_bytes(onnx, node) if node.op_type == "Constant" else {}
            for i in reads:
                made.update({i: weights[i]} if i in weights else folded.get(i, {}))
            for out in node.output:
                folded[out] = made
            continue
        used: dict[str, int] = {}
        for i in reads:
            used.update({i: weights[i]} if i in weights else folded.get(i, {}))
        nodes.append(
            Node(
                node.name or f"{node.op_type}_{index}",
                node.op_type,
                tuple(o for o in node.output if o),
                tuple(i for i in reads if i not in constant),
                tuple(o for o in node.output if o),
                used,
            )
        )
    return nodes


def _onnx_bytes(onnx, tensor) -> int:
    return (
        int(onnx.numpy_helper.to_array(tensor).nbytes)
        if not tensor.external_data
        else int(np.prod(tensor.dims or [1])) * 4
    )


def _onnx_constant_bytes(onnx, node) -> dict:
    for attr in node.attribute:
        if attr.name == "value" and attr.t.data_type in _ONNX_FLOAT:
            return {node.output[0]: _onnx_bytes(onnx, attr.t)}
    return {}


# ---- OpenVINO --------------------------------------------------------------------------------


def _openvino(path: str) -> list[Node]:
    ov = _lazy.require("openvino")
    model = ov.Core().read_model(path)
    folded: dict[str, dict[str, int]] = {}  # constant op name -> float constants it is made of
    nodes = []
    for op in model.get_ordered_ops():
        kind, name = op.get_type_name(), op.get_friendly_name()
        sources = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        if kind == "Constant":
            real = op.get_output_element_type(0).is_real()
            folded[name] = {name: int(op.get_byte_size())} if real else {}
            continue
        if kind in ("Parameter", "Result"):
            continue
        if sources and all(s.get_friendly_name() in folded for s in sources):
            folded[name] = {k: v for s in sources for k, v in folded[s.get_friendly_name()].items()}
            continue
        used, reads = {}, []
        for i, src in enumerate(sources):
            if src.get_friendly_name() in folded:
                used.update(folded[src.get_friendly_name()])
            else:
                reads.append(f"{src.get_friendly_name()}:{op.input_value(i).get_index()}")
        outs = tuple(f"{name}:{i}" for i in range(op.get_output_size()))
        nodes.append(Node(name, kind, (name,), tuple(reads), outs, used))
    return nodes


# ---- TFLite ----------------------------------------------------------------------------------


def _tflite(path: str) -> list[Node]:
    fb = _lazy.require("ai_edge_litert.tools.flatbuffer_utils")
    schema = _lazy.require("ai_edge_litert.schema_py_generated")
    model = fb.read_model(path)
    graph = model.subgraphs[0]
    codes = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    names = [(t.name or b"").decode(errors="replace") for t in graph.tensors]
    float_types = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    nodes = []
    for index, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        used, reads = {}, []
        for i in (int(i) for i in op.inputs if i >= 0):
            size = _tflite_buffer(model, graph.tensors[i])
            if size:
                if graph.tensors[i].type in float_types:
                    used[names[i]] = size
            else:
                reads.append(str(i))
        outs = [int(i) for i in op.outputs if i >= 0]
        label = tuple(names[i] for i in outs)
        nodes.append(
            Node(label[0] if label else f"{kind}_{index}", kind, label, tuple(reads), tuple(str(i) for i in outs), used)
        )
    return nodes


def _tflite_buffer(model, tensor) -> int:
    buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    if buffer is None:
        return 0
    if buffer.data is not None and len(buffer.data):
        return len(buffer.data)
    return int(buffer.size or 0) if (buffer.offset or 0) > 1 else 0
