"""The precision an artifact really has, read from the file, so a silent change can be flagged.

A converter can change numerics without saying so: OpenVINO's ``save_model`` stores fp16 weights
unless told not to, a quantizer can leave a model float when no op qualified. ``inspect`` reads
the artifact itself (no runtime is started) and ``check_precision`` compares what it found with
what was requested.

Classification, the same for every format:

- ``int8``: activations are quantized with ranges fixed at conversion (TFLite int8/uint8/int16
  activation tensors with a scale, ONNX QuantizeLinear nodes, IR FakeQuantize layers, ExecuTorch
  qint8 values in an XNNPACK graph or quantize_per_tensor kernels);
- ``dynamic-int8``: int8 (or uint8/int4) weights but float activations, quantized per call if at
  all (ONNX DynamicQuantizeLinear/MatMulInteger, IR u8/i8 weight constants, XNNPACK qdint8 values);
- ``fp16``: float16 weight constants and no integer weights (or, in a .pte, float16 activations);
- ``fp32``: none of the above.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: numpy and onnx are imported where they are used
    from xml.etree.ElementTree import Element

    import numpy as np
    from numpy.typing import ArrayLike
    from onnx import GraphProto

PRECISIONS = ("fp32", "fp16", "dynamic-int8", "int8")
_INT_WEIGHTS = ("int8", "uint8", "int4", "uint4")


@dataclass(frozen=True)
class PrecisionInfo:
    """What an artifact holds: its overall precision, bytes of weights per dtype, and the evidence."""

    target: str
    precision: str
    weight_bytes: dict[str, int] = field(default_factory=dict)  # dtype name -> bytes of constant tensors
    evidence: dict[str, int] = field(default_factory=dict)  # marker (op or tensor kind) -> count
    io_dtypes: dict[str, str] = field(default_factory=dict)  # graph input/output name -> dtype name
    # Largest |q| over the signed int8 weight tensors (None without any): at most 64 means 7-bit
    # weights, whose u8 x s8 pair sums cannot saturate 16 bits on x86 CPUs without VNNI.
    int8_weight_max: int | None = None

    @property
    def int8_weight_bits(self) -> int | None:
        if self.int8_weight_max is None:
            return None
        return 7 if self.int8_weight_max <= 64 else 8

    @property
    def total_weight_bytes(self) -> int:
        return int(sum(self.weight_bytes.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "total_weight_bytes": self.total_weight_bytes,
            "int8_weight_bits": self.int8_weight_bits,
        }


@dataclass(frozen=True)
class PrecisionCheck:
    """Requested versus found; truthy when they agree."""

    requested: str
    found: str
    passed: bool
    problem: str | None
    info: PrecisionInfo

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "found": self.found,
            "passed": self.passed,
            "problem": self.problem,
            **{k: v for k, v in self.info.to_json().items() if k != "precision"},
        }


# A precision counts only when its tensors hold this share of the weight bytes: a float32 IR of
# a Keras LSTM carries a 3-byte u8 constant, which is no quantization.
_SIGNIFICANT_SHARE = 0.05


def _classify(weight_bytes: dict[str, int], static: bool, dynamic: bool) -> str:
    if static:
        return "int8"
    total = sum(weight_bytes.get(t, 0) for t in ("float32", "float16", "bfloat16", *_INT_WEIGHTS)) or 1

    def share(types: tuple[str, ...]) -> float:
        return sum(weight_bytes.get(t, 0) for t in types) / total

    if dynamic or share(_INT_WEIGHTS) >= _SIGNIFICANT_SHARE:
        return "dynamic-int8"
    if share(("float16",)) >= _SIGNIFICANT_SHARE:
        return "fp16"
    return "fp32"


# ---- ONNX ------------------------------------------------------------------------------------

_ONNX_STATIC = ("QuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd")
_ONNX_DYNAMIC = (
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLSTM",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
)


def _inspect_onnx(path: Path) -> PrecisionInfo:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights: Counter[str] = Counter()
    int8_max = None
    for graph in _onnx_graphs(model.graph):
        for tensor in graph.initializer:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
            count = 1
            for dim in tensor.dims:
                count *= dim
            weights[dtype] += count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            if dtype == "int8" and count > _MIN_WEIGHT_ELEMENTS:
                int8_max = _int_max(int8_max, onnx.numpy_helper.to_array(tensor))
    ops = Counter(node.op_type for graph in _onnx_graphs(model.graph) for node in graph.node)
    evidence = {op: n for op, n in ops.items() if op in _ONNX_STATIC + _ONNX_DYNAMIC or op == "DequantizeLinear"}
    static = any(ops.get(op) for op in _ONNX_STATIC)
    dynamic = any(ops.get(op) for op in _ONNX_DYNAMIC)
    io = {
        v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        for v in [*model.graph.input, *model.graph.output]
        if v.type.HasField("tensor_type")
    }
    return PrecisionInfo(
        "onnx", _classify(_float_weights(weights), static, dynamic), dict(weights), evidence, io, int8_max
    )


# Weight tensors this small are zero points or scalars, not weights.
_MIN_WEIGHT_ELEMENTS = 16


def _int_max(current: int | None, values: ArrayLike) -> int | None:
    import numpy as np

    array = np.asarray(values)
    if array.size == 0:
        return current
    found = int(np.abs(array.astype(np.int32)).max())
    return found if current is None else max(current, found)


def _onnx_graphs(graph: GraphProto) -> Iterator[GraphProto]:
    """The graph and every subgraph (Loop/If/Scan bodies) inside it."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.g.node or attribute.g.initializer:
                yield from _onnx_graphs(attribute.g)
            for sub in attribute.graphs:
                yield from _onnx_graphs(sub)


def _float_weights(weights: Counter[str]) -> dict[str, int]:
    # Integer shapes and indices (int32/int64) are constants too but say nothing about precision.
    return {k: v for k, v in weights.items() if k in ("float32", "float16", "bfloat16", *_INT_WEIGHTS)}


# ---- OpenVINO IR -----------------------------------------------------------------------------

_IR_TYPES = {
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "i8": "int8",
    "u8": "uint8",
    "i4": "int4",
    "u4": "uint4",
    "i32": "int32",
    "i64": "int64",
    "boolean": "bool",
    "f64": "float64",
}


def _inspect_ir(path: Path) -> PrecisionInfo:
    root = ElementTree.parse(str(path)).getroot()
    weights: Counter[str] = Counter()
    types: Counter[str] = Counter()
    io: dict[str, str] = {}
    int8_max = None
    for layer in root.iter("layer"):
        kind = layer.get("type", "")
        types[kind] += 1
        data = layer.find("data")
        if kind == "Const" and data is not None:
            dtype = _IR_TYPES.get(data.get("element_type", ""), data.get("element_type", "?"))
            weights[dtype] += int(data.get("size", 0))
            if dtype == "int8" and int(data.get("size", 0)) > _MIN_WEIGHT_ELEMENTS:
                int8_max = _int_max(int8_max, _ir_constant(path, data))
        elif kind == "Parameter" and data is not None:
            io[layer.get("name", "")] = _IR_TYPES.get(data.get("element_type", ""), "?")
    evidence = {"FakeQuantize": types["FakeQuantize"]} if types["FakeQuantize"] else {}
    for dtype in ("float16", *_INT_WEIGHTS):
        if weights.get(dtype):
            evidence[f"{dtype} constants"] = weights[dtype]
    precision = _classify(_float_weights(weights), static=bool(types["FakeQuantize"]), dynamic=False)
    return PrecisionInfo("openvino", precision, dict(weights), evidence, io, int8_max)


def _ir_constant(xml: Path, data: Element) -> np.ndarray:
    """One int8 constant as an array, read from the IR's .bin (empty when the .bin is short)."""
    import numpy as np

    offset, size = int(data.get("offset", 0)), int(data.get("size", 0))
    with open(xml.with_suffix(".bin"), "rb") as handle:
        handle.seek(offset)
        return np.frombuffer(handle.read(size), dtype=np.int8)


# ---- TFLite ----------------------------------------------------------------------------------


def _inspect_tflite(path: Path) -> PrecisionInfo:
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    weights: Counter[str] = Counter()
    evidence: Counter[str] = Counter()
    static = False
    int8_max = None
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            dtype = _TFLITE_DTYPES.get(names.get(tensor.type, ""), names.get(tensor.type, "?").lower())
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            size = _buffer_size(buffer)
            if size:
                weights[dtype] += size
                if (
                    dtype == "int8"
                    and size > _MIN_WEIGHT_ELEMENTS
                    and buffer
                    and buffer.data is not None
                    and len(buffer.data)
                ):
                    int8_max = _int_max(int8_max, np.frombuffer(bytes(buffer.data), dtype=np.int8))
            elif dtype in ("int8", "uint8", "int16") and _has_scale(tensor):
                static = True
                evidence[f"{dtype} activations"] += 1
    for dtype in ("float16", *_INT_WEIGHTS):
        if weights.get(dtype):
            evidence[f"{dtype} constants"] = weights[dtype]
    main = model.subgraphs[0]
    io = {
        (main.tensors[i].name or b"").decode(errors="replace"): _TFLITE_DTYPES.get(
            names.get(main.tensors[i].type, ""), "?"
        )
        for i in [*main.inputs, *main.outputs]
    }
    precision = _classify(_float_weights(weights), static, dynamic=False)
    return PrecisionInfo("tflite", precision, dict(weights), dict(evidence), io, int8_max)


_TFLITE_DTYPES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "INT4": "int4",
    "FLOAT64": "float64",
}


def _buffer_size(buffer: Any) -> int:
    if buffer is None:
        return 0
    if buffer.data is not None and len(buffer.data):
        return len(buffer.data)
    return int(buffer.size or 0) if (buffer.offset or 0) > 1 else 0  # data stored past the flatbuffer


def _has_scale(tensor: Any) -> bool:
    q = tensor.quantization
    return q is not None and q.scale is not None and len(q.scale) > 0


# ---- ExecuTorch -------------------------------------------------------------------------------


def _inspect_pte(path: Path) -> PrecisionInfo:
    """A .pte's constants and activations, inside its XNNPACK delegates as well as outside them.

    XNNPACK's fp16 convolutions keep fp32 weights in the file (converted at load) while computing in
    fp16, so float16 activations count as fp16 evidence beside float16 weights.
    """
    import numpy as np

    from ._pte import read_program

    program = read_program(path)
    evidence = dict(program.activations)
    static = any(op.startswith("quantized_decomposed.quantize_per_tensor") for op in program.kernels) or bool(
        program.activations.get("int8 activations") or program.activations.get("uint8 activations")
    )
    dynamic = bool(program.activations.get("dynamically quantized activations")) or any(
        "choose_qparams" in op for op in program.kernels
    )
    for op, count in program.kernels.items():
        if op.startswith("quantized_decomposed."):
            evidence[op] = count
    for dtype in ("float16", *_INT_WEIGHTS):
        if program.constants.get(dtype):
            evidence[f"{dtype} constants"] = program.constants[dtype]
    weights = _float_weights(Counter(program.constants))
    precision = _classify(weights, static, dynamic)
    if precision == "fp32" and program.activations.get("float16 activations"):
        precision = "fp16"
    int8_max = None
    for data in program.int8_weights:
        if len(data) > _MIN_WEIGHT_ELEMENTS:
            int8_max = _int_max(int8_max, np.frombuffer(data, dtype=np.int8))
    return PrecisionInfo("executorch", precision, dict(program.constants), evidence, dict(program.io_dtypes), int8_max)


# ---- public ----------------------------------------------------------------------------------

_INSPECTORS = {"onnx": _inspect_onnx, "openvino": _inspect_ir, "tflite": _inspect_tflite, "executorch": _inspect_pte}


def inspect(path: str | os.PathLike[str], target: str) -> PrecisionInfo:
    """Read ``path`` (an .onnx, .tflite, IR .xml or .pte) and return the precision it really has."""
    if target not in _INSPECTORS:
        raise ValueError(f"unknown target {target!r}; known: {', '.join(_INSPECTORS)}")
    return _INSPECTORS[target](Path(path))


def check_precision(path: str | os.PathLike[str], target: str, requested: str | None) -> PrecisionCheck:
    """Compare the precision found in the artifact with the one requested (None: float32)."""
    wanted = requested or "fp32"
    info = inspect(path, target)
    if info.precision == wanted:
        return PrecisionCheck(wanted, info.precision, True, None, info)
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(info.evidence.items())) or "no quantized tensors"
    problem = (
        f"precision {info.precision} found where {wanted} was requested ({detail}): "
        f"the artifact's numerics changed silently"
    )
    return PrecisionCheck(wanted, info.precision, False, problem, info)
