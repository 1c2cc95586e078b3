"""What every route into ExecuTorch shares: torch.export, lowering to a .pte (XNNPACK-delegated or
portable kernels only), the source's tensor names kept in the program, and the delegate's share."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ondevice.core.lazy import is_instance_of, require

from ._common import one_line, package_versions
from ._torch import quiet_torch_export
from .registry import Converted, StrategyFailed

# A .pte keeps no tensor names. The source's travel in the program as two constant methods (lists
# of strings, the way ExecuTorch programs carry metadata); the runner reads them back, so outputs
# are matched by name as on every other target. A .pte without them is matched by position.
INPUT_NAMES_METHOD = "ondevice_input_names"
OUTPUT_NAMES_METHOD = "ondevice_output_names"
XNNPACK = "XnnpackBackend"
# Graph nodes that are bookkeeping, not ops: a delegate's outputs unpacked, memory planned.
_NOT_OPS = ("getitem", "alloc")


def export(model, args):
    """``torch.export.export(model, args)``; StrategyFailed with torch's first line.

    torch.export refuses a TorchScript module (a ``.pt`` source); torch's own converter from TorchScript
    to an exported program is used for those instead.
    """
    torch = require("torch")
    scripted = is_instance_of(model, "torch.jit", "ScriptModule")
    try:
        with quiet_torch_export():
            if scripted:
                from torch._export.converter import TS2EPConverter

                return TS2EPConverter(model, args).convert()
            return torch.export.export(model, args)
    except Exception as exc:
        what = "TS2EPConverter (TorchScript to torch.export)" if scripted else "torch.export.export"
        raise StrategyFailed(f"{what} failed: {one_line(exc)}") from None


def write_program(program, source, path: Path, delegate: bool) -> Converted:
    """Lower ``program`` (XNNPACK first where ``delegate``) and write it to ``path`` as a .pte."""
    exir = require("executorch.exir")
    partitioner = [_xnnpack_partitioner()] if delegate else None
    names = {INPUT_NAMES_METHOD: [s.name for s in source.inputs], OUTPUT_NAMES_METHOD: [s.name for s in source.outputs]}
    try:
        with quiet_torch_export():
            edge = exir.to_edge_transform_and_lower(program, partitioner=partitioner, constant_methods=names)
            # Read before to_executorch(), which adds memory-planning nodes to the same graph.
            delegation = delegation_of(edge.exported_program().graph_module)
            path.write_bytes(edge.to_executorch().buffer)
    except Exception as exc:
        raise StrategyFailed(f"ExecuTorch lowering failed: {one_line(exc)}") from None
    if delegate and not delegation["ops_delegated"]:
        raise StrategyFailed("the XNNPACK partitioner took no op: the program would run on portable kernels only")
    notes = [delegation_note(delegation)]
    return Converted(path=path, versions=package_versions("torch", "executorch"), notes=notes, delegation=delegation)


def _xnnpack_partitioner():
    module = require("executorch.backends.xnnpack.partition.xnnpack_partitioner")
    return module.XnnpackPartitioner()


def delegation_of(graph_module) -> dict:
    """How many ops each delegate took and which stayed on portable kernels.

    Counted as ``executorch.devtools.backend_debug.get_delegation_info`` counts them (the ops inside
    each lowered module, and the calls outside), but named by op (``aten.convolution.default``)
    rather than by graph-node name.
    """
    delegated: Counter[str] = Counter()
    portable: Counter[str] = Counter()
    subgraphs, backends = 0, set()
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            lowered = getattr(graph_module, node.target)
            subgraphs += 1
            backends.add(lowered.backend_id)
            delegated.update(_op_name(n) for n in lowered.original_module.graph.nodes if n.op == "call_function")
        elif node.op == "call_function" and "executorch_call_delegate" not in _op_name(node):
            portable[_op_name(node)] += 1
    for name in _NOT_OPS:
        delegated.pop(name, None)
        portable.pop(name, None)
    total = sum(delegated.values()) + sum(portable.values())
    return {
        "backends": sorted(backends),
        "subgraphs": subgraphs,
        "ops_total": total,
        "ops_delegated": sum(delegated.values()),
        "ops_portable": sum(portable.values()),
        "delegated_share": round(sum(delegated.values()) / total, 4) if total else 0.0,
        "delegated_ops": dict(sorted(delegated.items())),
        "portable_ops": dict(sorted(portable.items())),
    }


def _op_name(node) -> str:
    # Edge ops are named "aten.convolution.default"; operator.getitem is "getitem".
    return getattr(node.target, "__name__", None) or str(node.target)


def delegation_note(delegation: dict) -> str:
    """One line: the delegate's share and the ops left on portable kernels."""
    if not delegation["subgraphs"]:
        return f"portable kernels only: {delegation['ops_total']} ops, no delegate"
    left = ", ".join(f"{op} x{n}" for op, n in delegation["portable_ops"].items()) or "none"
    return (
        f"{'/'.join(delegation['backends'])} took {delegation['ops_delegated']} of {delegation['ops_total']} ops "
        f"in {delegation['subgraphs']} subgraph(s); portable kernels: {left}"
    )
