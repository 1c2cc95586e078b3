"""One toolkit for ONNX graph surgery, shared by every repair in converters/.

The convention: a rewrite is a function ``rewrite(scope, node)`` returning None to keep the node
as it is, or the list of nodes to put in its place (``[]`` removes it). ``rewrite_nodes`` applies
it to the main graph and to every subgraph (If branches, Loop and Scan bodies), innermost first,
so a parent graph always copies subgraphs that are already rewritten. A ``Scope`` indexes one
graph (producers, consumers, constants, outputs) and adds the initializers a rewrite needs.
Names a rewrite makes start with ``ondevice_`` and derive from a tensor name (unique in ONNX).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ondevice.core import lazy as _lazy


def subgraphs(node) -> list:
    """The graphs a node holds in its attributes (If branches, Loop and Scan bodies)."""
    found = []
    for attribute in node.attribute:
        found.extend([attribute.g] if attribute.HasField("g") else list(attribute.graphs))
    return found


def walk(graph) -> Iterator:
    """Every graph under ``graph``, ``graph`` itself included; a subgraph comes before its parent."""
    for node in graph.node:
        for sub in subgraphs(node):
            yield from walk(sub)
    yield graph


def all_nodes(graph) -> Iterator:
    """Every node of ``graph`` and of its subgraphs."""
    for each in walk(graph):
        yield from each.node


def _inputs(graph) -> Iterator[str]:
    for node in all_nodes(graph):
        yield from node.input


class Scope:
    """One graph, indexed once before it is rewritten: who writes and who reads each tensor."""

    def __init__(self, onnx, graph):
        self.onnx, self.graph = onnx, graph
        self.producers = {out: node for node in graph.node for out in node.output if out}
        # A node whose subgraph reads a tensor of this graph consumes it too (once per node).
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            read = dict.fromkeys([*node.input, *(n for sub in subgraphs(node) for n in _inputs(sub))])
            for name in read:
                self.consumers.setdefault(name, []).append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.outputs = {value.name for value in graph.output}
        self._constants: dict[str, Any] | None = None

    @property
    def constants(self) -> dict:
        """Tensor name -> ndarray for initializers and Constant nodes' values (computed on first use)."""
        if self._constants is None:
            to_array = self.onnx.numpy_helper.to_array
            self._constants = {name: to_array(init) for name, init in self.initializers.items()}
            for node in self.graph.node:
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if node.op_type == "Constant" and value is not None:
                    self._constants[node.output[0]] = to_array(value)
        return self._constants

    def add_initializer(self, array, name: str) -> str:
        """Add ``array`` as an initializer of this graph; returns its name."""
        self.graph.initializer.append(self.onnx.numpy_helper.from_array(array, name))
        return name


def replace_nodes(onnx, graph, nodes: list) -> None:
    """Make ``nodes`` the graph's node list (kept nodes may be views into the field being replaced)."""
    snapshot = onnx.GraphProto()
    snapshot.node.extend(nodes)  # a copy, taken before the field is cleared
    graph.ClearField("node")
    graph.node.extend(snapshot.node)


def rewrite_nodes(onnx, graph, rewrite: Callable[[Scope, Any], list | None]) -> int:
    """Apply ``rewrite`` to every node of ``graph`` and its subgraphs; returns how many it replaced."""
    replaced = 0
    for each in list(walk(graph)):  # listed first: replacing a parent's nodes copies its subgraphs
        scope, nodes, changed = Scope(onnx, each), [], 0
        for node in each.node:
            new = rewrite(scope, node)
            if new is None:
                nodes.append(node)
                continue
            nodes.extend(new)
            changed += 1
        if changed:
            replace_nodes(onnx, each, nodes)
        replaced += changed
    return replaced


def rename_tensors(graph, renames: dict) -> None:
    """Rename tensors everywhere they appear, subgraphs included (a body may read outer names)."""
    if not renames:
        return
    for each in walk(graph):
        for value in [*each.input, *each.output, *each.value_info]:
            value.name = renames.get(value.name, value.name)
        for init in each.initializer:
            init.name = renames.get(init.name, init.name)
        for node in each.node:
            node.input[:] = [renames.get(n, n) for n in node.input]
            node.output[:] = [renames.get(n, n) for n in node.output]


def io_names(graph) -> tuple[list[str], list[str]]:
    """The graph's real input names (initializers listed as inputs left out) and its output names."""
    initializers = {init.name for init in graph.initializer}
    return [v.name for v in graph.input if v.name not in initializers], [v.name for v in graph.output]


def dims(value) -> list:
    """A value's shape: an int per static axis, None for a symbolic or unknown one."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def shapes(onnx, model) -> dict:
    """Tensor name -> shape (see ``dims``) from ONNX shape inference, over every graph."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # inference is a help to the repairs, not a requirement
        inferred = model.graph
    found = {}
    for each in walk(inferred):
        for value in [*each.input, *each.value_info, *each.output]:
            if value.type.tensor_type.HasField("shape"):
                found[value.name] = dims(value)
        found.update({init.name: list(init.dims) for init in each.initializer})
    return found


def unordered(graph, outer: frozenset = frozenset()) -> list[str]:
    """Tensors read before any node writes them (empty: the graph is topologically sorted).

    ``outer`` holds the names a subgraph may read from the graphs around it.
    """
    known = set(outer) | {v.name for v in graph.input} | {i.name for i in graph.initializer} | {""}
    late = []
    for node in graph.node:
        late += [name for name in node.input if name not in known]
        for sub in subgraphs(node):
            late += unordered(sub, frozenset(known))
        known.update(node.output)
    return late


def has_external_data(onnx_path: Path) -> bool:
    """True when the ONNX file keeps some tensors in side files (its bytes alone are not the model)."""
    onnx = _lazy.require("onnx")
    from onnx.external_data_helper import uses_external_data

    model = onnx.load(str(onnx_path), load_external_data=False)
    return any(uses_external_data(t) for t in model.graph.initializer)


def copy_onnx(onnx_path: Path, dest: Path, data_name: str = "model.onnx.data") -> list[Path]:
    """Copy an ONNX model to ``dest``, gathering external data into one side file; returns the side files."""
    onnx = _lazy.require("onnx")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not has_external_data(onnx_path):
        # A byte copy keeps the file exactly as the user gave it (its hash included).
        shutil.copyfile(onnx_path, dest)
        return []
    # Side files are named relative to the source folder; re-save so the copy is self-contained.
    model = onnx.load(str(onnx_path))
    data = dest.with_name(data_name)
    onnx.save_model(model, str(dest), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    return [data]
