"""Read an ExecuTorch program (.pte) without running it: the tensors it holds, the kernels it calls
and, inside each XNNPACK delegate, that graph's nodes and values.

Both flatbuffers (the program, and each XNNPACK delegate's XNNGraph) are decoded to JSON by the flatc
that ships with executorch, against the schemas that ship beside it. Nothing of executorch is imported:
``import executorch.exir`` pulls in torch and takes seconds, while a precision or compatibility check
only needs the file. Segments (delegate payloads, named weights) follow the program in the file, at
the offsets its extended header and segment table give.
"""

from __future__ import annotations

import importlib.util
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
_XNN_DTYPES = {
    "xnn_datatype_fp32": "float32",
    "xnn_datatype_fp16": "float16",
    "xnn_datatype_bf16": "bfloat16",
    "xnn_datatype_qint8": "int8",
    "xnn_datatype_quint8": "uint8",
    "xnn_datatype_qcint8": "int8",
    "xnn_datatype_qdint8": "int8",
    "xnn_datatype_qcint4": "int4",
    "xnn_datatype_qbint4": "int4",
    "xnn_datatype_qint32": "int32",
    "xnn_datatype_qcint32": "int32",
    "xnn_datatype_int32": "int32",
}
_STATIC_ACTIVATIONS = ("xnn_datatype_qint8", "xnn_datatype_quint8")
_DYNAMIC_ACTIVATIONS = ("xnn_datatype_qdint8",)
# ExecuTorch ScalarType names (program.fbs) -> dtype names, and their sizes.
_SCALAR_TYPES = {
    "BYTE": "uint8",
    "CHAR": "int8",
    "SHORT": "int16",
    "INT": "int32",
    "LONG": "int64",
    "HALF": "float16",
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "BOOL": "bool",
    "QINT8": "int8",
    "QUINT8": "uint8",
    "QINT32": "int32",
    "BFLOAT16": "bfloat16",
}
_ITEMSIZE = {
    "uint8": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "bool": 1,
    "bfloat16": 2,
}


@dataclass
class Delegate:
    """One delegate call's payload: which backend, and (XNNPACK) its nodes by kind."""

    backend: str
    nodes: Counter[str] = field(default_factory=Counter)
    decoded: bool = False  # False for a backend this reader cannot look inside


@dataclass
class Program:
    """What one method of a .pte holds."""

    constants: Counter[str] = field(default_factory=Counter)  # dtype -> bytes of constant tensors
    activations: Counter[str] = field(default_factory=Counter)  # "int8 activations" etc. -> tensors
    kernels: Counter[str] = field(default_factory=Counter)  # op -> kernel calls outside delegates
    delegates: list[Delegate] = field(default_factory=list)
    io_dtypes: dict[str, str] = field(default_factory=dict)  # input_N / output_N -> dtype
    int8_weights: list[bytes] = field(default_factory=list)  # raw bytes of int8 weight tensors


@dataclass(frozen=True)
class _File:
    """A .pte's program (as JSON) and the segment bytes after it."""

    program: dict[str, Any]
    data: bytes
    segment_base: int

    def segment(self, index: int) -> bytes:
        entry = self.program["segments"][index]
        start = self.segment_base + int(entry["offset"])
        return self.data[start : start + int(entry["size"])]

    def named(self, key: str) -> bytes:
        entry = next((n for n in self.program.get("named_data") or [] if n.get("key") == key), None)
        return self.segment(int(entry["segment_index"])) if entry is not None else b""


def read_program(path: str | Path, method: str = "forward") -> Program:
    """The tensors, kernel calls and delegates of ``method`` in the .pte at ``path``."""
    pte = _read_file(Path(path))
    plan = next((p for p in pte.program.get("execution_plan") or [] if p.get("name") == method), None)
    if plan is None:
        raise ValueError(f"{path} has no method {method!r}")
    found = Program()
    _program_values(plan, found)
    operators = [
        f"{op['name']}.{op['overload']}" if op.get("overload") else op["name"] for op in plan.get("operators") or []
    ]
    for chain in plan.get("chains") or []:
        for instruction in chain.get("instructions") or []:
            if instruction.get("instr_args_type") == "KernelCall":
                found.kernels[operators[instruction["instr_args"]["op_index"]].replace("::", ".")] += 1
    for delegate in plan.get("delegates") or []:
        processed = delegate["processed"]
        if processed.get("location") == "SEGMENT":
            payload = pte.segment(int(processed["index"]))
        else:
            payload = bytes(pte.program["backend_delegate_data"][int(processed["index"])].get("data") or [])
        found.delegates.append(_delegate(delegate["id"], payload, pte, found))
    return found


def _read_file(path: Path) -> _File:
    data = path.read_bytes()
    # The extended header ("eh00" at byte 8) says where the flatbuffer ends and the segments begin.
    extended = data[8:40]
    if extended[:4] == b"eh00":
        size, base = int.from_bytes(extended[8:16], "little"), int.from_bytes(extended[16:24], "little")
    else:
        size, base = len(data), len(data)
    return _File(_flatbuffer_json(data[:size], _executorch_file("schema", "program.fbs")), data, base)


def _program_values(plan: dict[str, Any], found: Program) -> None:
    """Constant tensors and I/O dtypes of the program itself (outside any delegate)."""
    values = plan.get("values") or []
    for kind in ("input", "output"):
        for i, index in enumerate(plan.get(f"{kind}s") or []):
            value = values[index]
            if value.get("val_type") == "Tensor":
                found.io_dtypes[f"{kind}_{i}"] = _SCALAR_TYPES.get(str(value["val"].get("scalar_type")), "?")
    for value in values:
        tensor = value.get("val") or {}
        if value.get("val_type") != "Tensor" or not tensor.get("data_buffer_idx"):
            continue
        dtype = _SCALAR_TYPES.get(str(tensor.get("scalar_type")), "?")
        count = 1
        for size in tensor.get("sizes") or []:
            count *= int(size)
        found.constants[dtype] += count * _ITEMSIZE.get(dtype, 1)


def _delegate(backend: str, payload: bytes, pte: _File, found: Program) -> Delegate:
    if "xnnpack" not in backend.lower() or not payload:
        return Delegate(backend)
    graph = _xnnpack_graph(payload)
    delegate = Delegate(backend, Counter(n["xnode_union_type"] for n in graph.get("xnodes") or []), True)
    offsets = graph.get("constant_data") or []
    for value in graph.get("xvalues") or []:
        body = value.get("xvalue_union") or {}
        tensor = body.get("tensor_value", body)
        datatype, index = tensor.get("datatype", ""), int(tensor.get("constant_buffer_idx") or 0)
        dtype = _XNN_DTYPES.get(datatype, datatype)
        if index and index < len(offsets):
            found.constants[dtype] += int(offsets[index].get("size") or 0)
            if dtype == "int8":
                found.int8_weights.append(pte.named(offsets[index].get("named_key", "")))
        elif datatype in _STATIC_ACTIVATIONS:
            found.activations[f"{dtype} activations"] += 1
        elif datatype in _DYNAMIC_ACTIVATIONS:
            found.activations["dynamically quantized activations"] += 1
        elif dtype == "float16":
            found.activations["float16 activations"] += 1
    return delegate


def _xnnpack_graph(payload: bytes) -> dict[str, Any]:
    """An XNNPACK delegate payload's XNNGraph: after its "XH00" header, else the payload itself (older files)."""
    if payload[4:8] == b"XH00":
        offset, size = int.from_bytes(payload[10:14], "little"), int.from_bytes(payload[14:18], "little")
        payload = payload[offset : offset + size]
    return _flatbuffer_json(payload, _executorch_file("backends", "xnnpack", "serialization", "schema.fbs"))


def _executorch_file(*parts: str) -> Path:
    """A file shipped inside the executorch package, found without importing it."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("executorch is not installed: pip install 'ondevice[executorch]'")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def _flatbuffer_json(binary: bytes, schema: Path) -> dict[str, Any]:
    """``binary`` decoded against ``schema`` by executorch's flatc."""
    flatc = _executorch_file("data", "bin", "flatc")
    with tempfile.TemporaryDirectory(prefix="ondevice-pte-") as tmp:
        path = Path(tmp) / "data.bin"
        path.write_bytes(binary)
        subprocess.run(
            [
                str(flatc),
                "--json",
                "--strict-json",
                "--raw-binary",
                "--defaults-json",
                "-o",
                tmp,
                str(schema),
                "--",
                str(path),
            ],
            check=True,
            capture_output=True,
        )
        text = (Path(tmp) / "data.json").read_text()
    # flatc writes infinite clamp bounds as bare inf / nan, which JSON lacks; nothing read here uses them.
    decoded: dict[str, Any] = json.loads(re.sub(r"(?<![\w\"])-?(inf|nan)\b", "0", text))
    return decoded
