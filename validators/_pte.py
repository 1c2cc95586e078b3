"""Read an ExecuTorch program (.pte) without running it: the tensors it holds, the kernels it calls
and, inside each XNNPACK delegate, that graph's nodes and values.

The program is ExecuTorch's own flatbuffer, read with its deserializer. An XNNPACK delegate is a
payload of its own (a header, then an XNNGraph flatbuffer); it is decoded to JSON by the flatc that
ships with executorch, against the schema that ships beside XNNPACK's serializer. Weights of a
delegated program live in the program's named data, keyed from that graph.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# XNNPACK value datatypes -> the dtype names the precision check uses. qint8/quint8 values are
# quantized per tensor, qcint8/qcint4/qbint4 per channel or block (weights), qdint8 per call (dynamic).
_XNN_DTYPES = {"xnn_datatype_fp32": "float32", "xnn_datatype_fp16": "float16", "xnn_datatype_bf16": "bfloat16",
               "xnn_datatype_qint8": "int8", "xnn_datatype_quint8": "uint8", "xnn_datatype_qcint8": "int8",
               "xnn_datatype_qdint8": "int8", "xnn_datatype_qcint4": "int4", "xnn_datatype_qbint4": "int4",
               "xnn_datatype_qint32": "int32", "xnn_datatype_qcint32": "int32", "xnn_datatype_int32": "int32"}
_STATIC_ACTIVATIONS = ("xnn_datatype_qint8", "xnn_datatype_quint8")
_DYNAMIC_ACTIVATIONS = ("xnn_datatype_qdint8",)
# ExecuTorch ScalarType codes -> dtype names.
_SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                 7: "float64", 11: "bool", 12: "int8", 13: "uint8", 14: "int32", 15: "bfloat16"}
_ITEMSIZE = {"uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "float16": 2, "float32": 4, "float64": 8,
             "bool": 1, "bfloat16": 2}


@dataclass
class Delegate:
    """One delegate call's payload: which backend, and (XNNPACK) its nodes by kind."""

    backend: str
    nodes: Counter[str] = field(default_factory=Counter)
    decoded: bool = False   # False for a backend this reader cannot look inside


@dataclass
class Program:
    """What one method of a .pte holds."""

    constants: Counter[str] = field(default_factory=Counter)  # dtype -> bytes of constant tensors
    activations: Counter[str] = field(default_factory=Counter)  # "int8 activations" etc. -> tensors
    kernels: Counter[str] = field(default_factory=Counter)    # op -> kernel calls outside delegates
    delegates: list[Delegate] = field(default_factory=list)
    io_dtypes: dict[str, str] = field(default_factory=dict)   # input_N / output_N -> dtype
    int8_weights: list[bytes] = field(default_factory=list)   # raw bytes of int8 weight tensors


def read_program(path: str | Path, method: str = "forward") -> Program:
    """The tensors, kernel calls and delegates of ``method`` in the .pte at ``path``."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    pte = deserialize_pte_binary(Path(path).read_bytes())
    plan = next((p for p in pte.program.execution_plan if p.name == method), None)
    if plan is None:
        raise ValueError(f"{path} has no method {method!r}")
    found = Program()
    _program_values(plan, found)
    operators = [f"{op.name}.{op.overload}" if op.overload else op.name for op in plan.operators]
    for chain in plan.chains:
        for instruction in chain.instructions:
            kind = type(instruction.instr_args).__name__
            if kind == "KernelCall":
                found.kernels[operators[instruction.instr_args.op_index].replace("::", ".")] += 1
    for delegate in plan.delegates:
        payload = pte.program.backend_delegate_data[delegate.processed.index].data \
            if delegate.processed.location == 0 else None   # 0: inline in the program
        found.delegates.append(_delegate(delegate.id, payload, pte, found))
    return found


def _program_values(plan: Any, found: Program) -> None:
    """Constant tensors and I/O dtypes of the program itself (outside any delegate)."""
    values = plan.values
    for kind, indices in (("input", plan.inputs), ("output", plan.outputs)):
        for i, index in enumerate(indices):
            tensor = values[index].val
            if type(tensor).__name__ == "Tensor":
                found.io_dtypes[f"{kind}_{i}"] = _SCALAR_TYPES.get(int(tensor.scalar_type), "?")
    for value in values:
        tensor = value.val
        if type(tensor).__name__ != "Tensor" or not tensor.data_buffer_idx:
            continue
        dtype = _SCALAR_TYPES.get(int(tensor.scalar_type), "?")
        count = 1
        for size in tensor.sizes:
            count *= int(size)
        found.constants[dtype] += count * _ITEMSIZE.get(dtype, 1)


def _delegate(backend: str, payload: bytes | None, pte: Any, found: Program) -> Delegate:
    if "xnnpack" not in backend.lower() or payload is None:
        return Delegate(backend)
    graph = _xnnpack_graph(payload)
    delegate = Delegate(backend, Counter(n["xnode_union_type"] for n in graph.get("xnodes", [])), True)
    offsets = graph.get("constant_data") or []
    named = pte.named_data
    for value in graph.get("xvalues", []):
        body = value.get("xvalue_union") or {}
        tensor = body.get("tensor_value", body)
        datatype, index = tensor.get("datatype", ""), int(tensor.get("constant_buffer_idx") or 0)
        dtype = _XNN_DTYPES.get(datatype, datatype)
        if index and index < len(offsets):
            found.constants[dtype] += int(offsets[index].get("size") or 0)
            if dtype == "int8" and named is not None:
                found.int8_weights.append(_named_bytes(named, offsets[index].get("named_key", "")))
        elif datatype in _STATIC_ACTIVATIONS:
            found.activations[f"{dtype} activations"] += 1
        elif datatype in _DYNAMIC_ACTIVATIONS:
            found.activations["dynamically quantized activations"] += 1
        elif dtype == "float16":
            found.activations["float16 activations"] += 1
    return delegate


def _named_bytes(named: Any, key: str) -> bytes:
    entry = named.pte_data.get(key)
    return bytes(named.buffers[entry.buffer_index]) if entry is not None else b""


def _xnnpack_graph(payload: bytes) -> dict[str, Any]:
    """An XNNPACK delegate payload's XNNGraph as a dict (flatc's JSON form)."""
    import importlib.resources

    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import XNNHeader
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    header = XNNHeader.from_bytes(payload[:XNNHeader.EXPECTED_LENGTH])
    flatbuffer = payload[header.flatbuffer_offset:header.flatbuffer_offset + header.flatbuffer_size]
    schema = importlib.resources.files("executorch.backends.xnnpack.serialization").joinpath("schema.fbs")
    with tempfile.TemporaryDirectory(prefix="ondevice-pte-") as tmp, importlib.resources.as_file(schema) as fbs:
        binary = Path(tmp) / "graph.bin"
        binary.write_bytes(flatbuffer)
        subprocess.run([_get_flatc_path(), "--json", "--strict-json", "--raw-binary", "-o", tmp, str(fbs), "--",
                        str(binary)], check=True, capture_output=True)
        text = (Path(tmp) / "graph.json").read_text()
    # flatc writes infinite clamp bounds as bare inf / nan, which JSON lacks; nothing read here uses them.
    graph: dict[str, Any] = json.loads(re.sub(r"(?<![\w\"])-?(inf|nan)\b", "0", text))
    return graph
