"""Will an artifact run on the device's accelerator? Which ops each backend takes, per target.

A checker is registered per target (``@checker("tflite", ("gpu",))``) and returns one
``BackendCompatibility`` per backend it names: how many ops the backend takes, which op types it
refuses, and into how many pieces the graph falls. A backend that could not be checked says why
(``checked=False``); it never counts as supported. docs/compatibility.md describes each check and
what a pass does not guarantee.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BackendCompatibility:
    """One backend's verdict on one artifact; truthy when it was checked and takes every op."""

    backend: str
    checked: bool
    supported: bool = False
    ops_total: int | None = None
    ops_supported: int | None = None
    unsupported: tuple[str, ...] = ()  # op types the backend refuses, sorted
    partitions: int | None = None  # connected pieces of the graph the backend takes
    reason: str | None = None  # why it was not checked
    details: dict[str, Any] = field(default_factory=dict)  # method, per-op problems, tool output

    @property
    def coverage(self) -> float | None:
        """Share of the ops the backend takes (None when not checked or the graph has no ops)."""
        if not self.checked or not self.ops_total or self.ops_supported is None:
            return None
        return self.ops_supported / self.ops_total

    def __bool__(self) -> bool:
        return self.checked and self.supported

    def to_json(self) -> dict[str, Any]:
        data = {
            "supported": bool(self),
            "checked": self.checked,
            "ops_total": self.ops_total,
            "ops_supported": self.ops_supported,
            "unsupported": list(self.unsupported),
            "partitions": self.partitions,
            "coverage": self.coverage,
            **self.details,
        }
        if self.reason:
            data["reason"] = self.reason
        return data


def not_checked(backend: str, reason: str) -> BackendCompatibility:
    """A backend whose check could not run, with the reason."""
    return BackendCompatibility(backend, checked=False, reason=reason)


def measured(backend: str, ops: list[str], ok: list[bool], partitions: int, **details: Any) -> BackendCompatibility:
    """A checked backend from per-op types and verdicts (``ok[i]`` for ``ops[i]``)."""
    refused = tuple(sorted({op for op, good in zip(ops, ok, strict=True) if not good}))
    return BackendCompatibility(
        backend, True, all(ok), len(ops), sum(map(bool, ok)), refused, partitions, details=details
    )


# ---- the registry: one checker per target ----------------------------------------------------------

CheckFn = Callable[[Path], dict[str, BackendCompatibility]]  # artifact path -> {backend: verdict}


@dataclass(frozen=True)
class Checker:
    """The backends one target's artifacts are checked against, and the function that checks them."""

    target: str
    backends: tuple[str, ...]
    check: CheckFn


_CHECKERS: dict[str, Checker] = {}
# Modules that register checkers of their own (a target added elsewhere names its module here).
CHECKER_MODULES: tuple[str, ...] = ("ondevice.validators.compatibility_executorch",)


def checker(target: str, backends: Iterable[str]) -> Callable[[CheckFn], CheckFn]:
    """Decorator registering ``fn(path) -> {backend: BackendCompatibility}``; a second one for a target is refused."""

    def register(fn: CheckFn) -> CheckFn:
        if target in _CHECKERS:
            raise ValueError(f"a compatibility checker for {target!r} is registered twice")
        _CHECKERS[target] = Checker(target, tuple(backends), fn)
        return fn

    return register


def _load_all() -> None:
    for module in CHECKER_MODULES:
        importlib.import_module(module)


def backends_for(target: str) -> tuple[str, ...]:
    """The backends ``target`` is checked against; () for a target without a checker."""
    _load_all()
    return _CHECKERS[target].backends if target in _CHECKERS else ()


def all_backends() -> dict[str, tuple[str, ...]]:
    """{target: backends} for every registered checker."""
    _load_all()
    return {t: c.backends for t, c in _CHECKERS.items()}


def check_artifact(path: str | os.PathLike[str], target: str) -> dict[str, BackendCompatibility]:
    """Every registered backend's verdict on the artifact at ``path``; a check that fails is recorded, not raised."""
    _load_all()
    found = _CHECKERS.get(target)
    if found is None:
        return {}
    try:
        results = found.check(Path(path))
    except Exception as exc:  # a checker's failure is a fact about this artifact, not a reason to stop
        lines = str(exc).strip().splitlines()
        why = f"the check failed: {type(exc).__name__}: {lines[0] if lines else ''}"[:300]
        return {b: not_checked(b, why) for b in found.backends}
    # Not ``results.get(b) or ...``: an unsupported verdict is falsy and must be kept.
    return {
        b: results[b] if b in results else not_checked(b, "the checker returned nothing for it") for b in found.backends
    }


def check_files(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worker entry (one process for a whole run): ``[{"path", "target"}]`` -> ``[{backend: json}]`` plus seconds."""
    out = []
    for item in items:
        start = time.perf_counter()
        results = check_artifact(item["path"], item["target"])
        out.append(
            {
                "compatibility": {b: r.to_json() for b, r in results.items()},
                "seconds": round(time.perf_counter() - start, 4),
            }
        )
    return out


def partitions(nodes: list[int], edges: Iterable[tuple[int, int]], supported: set[int]) -> int:
    """How many connected pieces the supported nodes form (edges join a producer and its consumer)."""
    parent = {n: n for n in nodes if n in supported}

    def root(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in edges:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    return len({root(n) for n in parent})


# ---- TFLite: the GPU delegate ----------------------------------------------------------------------

# Op-level rules ported from TFLite's tensorflow/lite/tools/versioning/gpu_compatibility.cc, the
# function the GPU delegate's model builder itself asks (CheckGpuDelegateCompatibility).
_GPU_UNARY = frozenset("ABS CEIL COS ELU EXP FLOOR GELU LOG LOGISTIC NEG RSQRT SIGN SIN SQRT SQUARE TANH".split())
_GPU_BINARY = frozenset(
    "ATAN2 DIV EQUAL FLOOR_DIV FLOOR_MOD GREATER GREATER_EQUAL LOGICAL_AND LESS LESS_EQUAL "
    "MAXIMUM MINIMUM NOT_EQUAL POW SQUARED_DIFFERENCE SUB".split()
)
_GPU_ONE_RUNTIME_INPUT = frozenset(
    "RESHAPE TILE TRANSPOSE HARD_SWISH QUANTIZE DEPTH_TO_SPACE SPACE_TO_DEPTH "
    "RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR".split()
)
_GPU_REDUCE = frozenset("MEAN SUM REDUCE_MAX REDUCE_MIN REDUCE_PROD".split())
_GPU_OP_LEVEL = frozenset(
    "ADD ADD_N AVERAGE_POOL_2D BATCH_MATMUL CAST CONCATENATION CONV_2D CUMSUM DENSIFY "
    "DEPTHWISE_CONV_2D DEQUANTIZE EMBEDDING_LOOKUP DYNAMIC_UPDATE_SLICE FULLY_CONNECTED "
    "GATHER LSTM MAX_POOL_2D MUL PACK ONE_HOT RELU_N1_TO_1 PRELU SELECT SELECT_V2 SLICE "
    "SOFTMAX SPLIT SPLIT_V STRIDED_SLICE TRANSPOSE_CONV RELU RELU6 LEAKY_RELU PAD PADV2 "
    "MIRROR_PAD STABLEHLO_CLAMP".split()
)
GPU_BUILTINS = _GPU_UNARY | _GPU_BINARY | _GPU_ONE_RUNTIME_INPUT | _GPU_REDUCE | _GPU_OP_LEVEL
GPU_CUSTOM_OPS = frozenset({"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"})
_FLOATS = ("FLOAT32", "FLOAT16")


_TensorId = tuple[int, int]  # (subgraph, tensor index)


@dataclass(frozen=True)
class _Tensor:
    shape: tuple[int, ...]
    dtype: str
    const: bool


@dataclass(frozen=True)
class _Op:
    name: str
    custom: bool
    inputs: tuple[Any, ...]  # _Tensor, or None for an omitted optional input (never the first)
    outputs: tuple[_Tensor, ...]
    options: Any  # the builtin options table, or None
    tensor_ids: tuple[tuple[_TensorId, ...], tuple[_TensorId, ...]]  # (inputs, outputs): (subgraph, index)

    @property
    def runtime_inputs(self) -> int:
        return sum(1 for t in self.inputs if t is not None and not t.const)

    @property
    def const_inputs(self) -> int:
        return sum(1 for t in self.inputs if t is not None and t.const)

    def option(self, schema: Any, name: str) -> Any:
        """The builtin options as ``schema.<name>`` (e.g. SoftmaxOptions), or None."""
        table = self.options
        if table is None:
            return None
        parsed = getattr(schema, name)()
        parsed.Init(table.Bytes, table.Pos)
        return parsed


def _gpu_problem(op: _Op, schema: Any) -> str | None:
    """Why the GPU delegate refuses ``op``, or None: gpu_compatibility.cc's checks that need no tensor values."""
    if op.custom:
        if op.name.startswith("Flex"):
            return "a TensorFlow op (Flex delegate): never runs on the GPU"
        return None if op.name in GPU_CUSTOM_OPS else "a custom op the GPU delegate does not implement"
    if op.name not in GPU_BUILTINS:
        return "the GPU delegate has no kernel for this op"
    rule = _GPU_RULES.get(op.name)
    if rule is not None:
        return rule(op, schema)
    if op.name in _GPU_UNARY and (op.runtime_inputs, op.const_inputs) != (1, 0):
        return "takes one runtime input and no constant"
    if op.name in _GPU_BINARY and (op.runtime_inputs, op.const_inputs) not in ((2, 0), (1, 1)):
        return "takes two runtime inputs, or one and a constant"
    if op.name in _GPU_ONE_RUNTIME_INPUT and (op.runtime_inputs != 1 or len(op.outputs) != 1):
        return f"takes one runtime input (this node has {op.runtime_inputs})"
    if op.name in _GPU_REDUCE:
        return _axes_problem(op)
    return None


def _axes_problem(op: _Op) -> str | None:
    axes = op.inputs[1] if len(op.inputs) > 1 else None
    if op.runtime_inputs != 1:
        return f"takes one runtime input (this node has {op.runtime_inputs})"
    if axes is None or not axes.const or axes.dtype != "INT32":
        return "axes must be a constant int32 tensor"
    return None


def _rank_3_or_4(op: _Op) -> str | None:
    rank = len(op.inputs[0].shape) if op.inputs and op.inputs[0] is not None else 0
    return None if rank in (3, 4) else f"supports 3-D and 4-D tensors only (this one is {rank}-D)"


def _strided_slice(op: _Op, schema: Any) -> str | None:
    opts = op.option(schema, "StridedSliceOptions")
    if opts is not None and (opts.EllipsisMask() or opts.NewAxisMask() or opts.ShrinkAxisMask()):
        return "ellipsis, new-axis and shrink-axis masks are not supported"
    return "needs begin, end and strides inputs" if len(op.inputs) < 4 else _rank_3_or_4(op)


def _cast(op: _Op, schema: Any) -> str | None:
    pair = (op.inputs[0].dtype, op.outputs[0].dtype)
    ok = (
        (pair[0] == "BOOL" and pair[1] in _FLOATS)
        or (pair[0] in _FLOATS and pair[1] == "BOOL")
        or (pair[0] in ("FLOAT32", "INT32") and pair[1] in ("FLOAT32", "INT32"))
    )
    return None if ok else f"no GPU cast from {pair[0]} to {pair[1]}"


def _gather(op: _Op, schema: Any) -> str | None:
    data, indices = op.inputs[0], op.inputs[1]
    if data.dtype == "INT32":
        return "int32 data is not supported"
    if len(indices.shape) != 1 or indices.dtype != "INT32":
        return "indices must be a 1-D int32 tensor"
    return None


def _cumsum(op: _Op, schema: Any) -> str | None:
    data, axis = op.inputs[0], op.inputs[1]
    ok = data.dtype in _FLOATS and op.outputs[0].dtype == data.dtype and axis.dtype == "INT32" and axis.const
    return None if ok else "input must be float and the axis a constant int32"


def _softmax(op: _Op, schema: Any) -> str | None:
    opts = op.option(schema, "SoftmaxOptions")
    return None if opts is None or opts.Beta() == 1.0 else f"beta {opts.Beta():g} (only 1 is supported)"


def _pad(op: _Op, schema: Any) -> str | None:
    if op.name == "MIRROR_PAD":
        opts = op.option(schema, "MirrorPadOptions")
        if opts is not None and opts.Mode() != schema.MirrorPadMode.REFLECT:
            return "only reflective mirror padding is supported"
    if op.runtime_inputs != 1:
        return f"takes one runtime input (this node has {op.runtime_inputs})"
    paddings = op.inputs[1] if len(op.inputs) > 1 else None
    if paddings is None or len(paddings.shape) != 2 or paddings.shape[0] not in (3, 4) or paddings.shape[1] != 2:
        return "paddings must be a 3x2 or 4x2 tensor"
    return None


def _fully_connected(op: _Op, schema: Any) -> str | None:
    opts = op.option(schema, "FullyConnectedOptions")
    if opts is not None and opts.WeightsFormat() != 0:
        return "shuffled weights are not supported"
    if op.runtime_inputs > 2:
        return "takes at most two runtime inputs"
    if op.inputs[0] is not None and op.inputs[0].const:
        return "a constant input is not supported"
    if opts is not None and opts.KeepNumDims() and len(op.inputs[0].shape) != len(op.outputs[0].shape):
        return "keep_num_dims with differing input and output ranks"
    return None


def _dequantize(op: _Op, schema: Any) -> str | None:
    return "int16 dequantization is not supported" if op.inputs[0].dtype == "INT16" else None


def _conv(op: _Op, schema: Any) -> str | None:
    return None if op.runtime_inputs <= 2 and len(op.outputs) == 1 else "takes one or two runtime inputs"


_GPU_RULES: dict[str, Callable[[_Op, Any], str | None]] = {
    "ADD_N": lambda op, s: None if len(op.inputs) == 2 else "only two inputs are supported",
    "BATCH_MATMUL": lambda op, s: None if (len(op.inputs), len(op.outputs)) == (2, 1) else "needs 2 inputs, 1 output",
    "CAST": _cast,
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "TRANSPOSE_CONV": _conv,
    "CUMSUM": _cumsum,
    "DEQUANTIZE": _dequantize,
    "FULLY_CONNECTED": _fully_connected,
    "GATHER": _gather,
    "MIRROR_PAD": _pad,
    "PAD": _pad,
    "PADV2": _pad,
    "SLICE": lambda op, s: _rank_3_or_4(op),
    "SOFTMAX": _softmax,
    "STRIDED_SLICE": _strided_slice,
}


def _tflite_schema() -> Any:
    """The TFLite flatbuffer schema module: LiteRT's (cheap to import), else TensorFlow's."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def _tflite_ops(data: bytes, schema: Any) -> list[_Op]:
    """Every op of every subgraph, read lazily from the flatbuffer (weights are never copied)."""
    model = schema.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def const(buffer_index: int) -> bool:
        buffer = model.Buffers(buffer_index) if 0 < buffer_index < model.BuffersLength() else None
        return buffer is not None and (buffer.DataLength() > 0 or buffer.Offset() > 1)

    if model.SubgraphsLength() == 0:  # an all-zero file parses so: nothing to run, so nothing "supported"
        raise ValueError("the file holds no subgraph: not a TFLite model")
    ops: list[_Op] = []
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
        specs = [
            _Tensor(
                tuple(t.ShapeAsNumpy()) if t.ShapeLength() else (),
                dtypes.get(t.Type(), str(t.Type())),
                const(t.Buffer()),
            )
            for t in tensors
        ]
        for j in range(graph.OperatorsLength()):
            op = graph.Operators(j)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = builtin == schema.BuiltinOperator.CUSTOM
            name = (code.CustomCode() or b"?").decode(errors="replace") if custom else names.get(builtin, str(builtin))
            ins = tuple(op.InputsAsNumpy()) if op.InputsLength() else ()
            outs = tuple(op.OutputsAsNumpy()) if op.OutputsLength() else ()
            ops.append(
                _Op(
                    name,
                    custom,
                    tuple(specs[i] if i >= 0 else None for i in ins),
                    tuple(specs[i] for i in outs),
                    op.BuiltinOptions(),
                    (tuple((g, i) for i in ins if i >= 0), tuple((g, i) for i in outs)),
                )
            )
    return ops


def _tensor_edges(ops: list[_Op]) -> list[tuple[int, int]]:
    """(producer, consumer) op index pairs: one op's output is another's input."""
    producer = {t: i for i, op in enumerate(ops) for t in op.tensor_ids[1]}
    return [(producer[t], i) for i, op in enumerate(ops) for t in op.tensor_ids[0] if t in producer]


@checker("tflite", ("gpu",))
def _tflite(path: Path) -> dict[str, BackendCompatibility]:
    schema = _tflite_schema()
    ops = _tflite_ops(path.read_bytes(), schema)
    problems = {i: why for i, op in enumerate(ops) if (why := _gpu_problem(op, schema))}
    analyzer = _analyzer_verdict(path)
    for i, why in analyzer.pop("rejected", {}).items():
        problems.setdefault(i, f"model analyzer: {why}")
    ok = [i not in problems for i in range(len(ops))]
    listed = [f"{ops[i].name} (op {i}): {why}" for i, why in sorted(problems.items())][:20]
    pieces = partitions(list(range(len(ops))), _tensor_edges(ops), {i for i, good in enumerate(ok) if good})
    return {
        "gpu": measured(
            "gpu",
            [op.name for op in ops],
            ok,
            pieces,
            method="op rules of TFLite's gpu_compatibility.cc (op types, runtime and constant "
            "inputs, ranks, dtypes, options)",
            problems=listed,
            analyzer=analyzer,
        )
    }


# The TFLite model analyzer reports a refused op as a line after the op's own line.
_ANALYZER_WARNING = "GPU COMPATIBILITY WARNING: "


def _analyzer_verdict(path: Path) -> dict[str, Any]:
    """What TFLite's model analyzer says, and whether its GPU check works in this build at all.

    Some builds ship the analyzer with its GPU check compiled out: it then calls every model
    compatible. A one-op model with a custom op no GPU delegate implements (the canary) tells the
    two apart, so an inert analyzer's "compatible" is recorded as no evidence.
    """
    try:
        text, tool = _analyzer_text(path)
        effective = _analyzer_effective()
    except Exception as exc:  # the rules still decide; the report says the analyzer could not add to them
        return {"ran": False, "reason": f"{type(exc).__name__}: {str(exc).strip()[:200]}"}
    rejected = analyzer_rejections(text)
    verdict: dict[str, Any] = {
        "ran": True,
        "tool": tool,
        "effective": effective,
        "warnings": len(rejected),
        "rejected": rejected,
    }
    if not effective:
        verdict["note"] = (
            "the analyzer of this build called a custom op no GPU delegate implements compatible "
            "(its GPU check is compiled out): its verdict is not used"
        )
    return verdict


def analyzer_rejections(text: str) -> dict[int, str]:
    """{op index, counted over all subgraphs in order: message} from the analyzer's report.

    Each refused op's line (``  Op#3 CONV_3D(...)``) is followed by ``GPU COMPATIBILITY WARNING: why``;
    a per-subgraph summary warning follows the op list and names no single op.
    """
    rejected: dict[int, str] = {}
    op = -1
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Op#"):
            op += 1
        elif stripped.startswith(_ANALYZER_WARNING):
            why = stripped[len(_ANALYZER_WARNING) :]
            if not why.startswith("Subgraph#") and op >= 0:
                rejected[op] = why
    return rejected


def _analyzer_text(source: Path | bytes, is_path: bool = True) -> tuple[str, str]:
    """The analyzer's report for a model file (or bytes) and which analyzer wrote it; nothing reaches stdout."""
    try:
        # LiteRT's binding returns the text instead of printing it, and loads in a fraction of a second.
        from ai_edge_litert import _pywrap_analyzer_wrapper as wrapper
    except ImportError:
        return analyze_with_tensorflow(source, is_path), "tf.lite.experimental.Analyzer"
    return str(wrapper.ModelAnalyzer(source if not is_path else str(source), is_path, True)), "ai_edge_litert analyzer"


def analyze_with_tensorflow(source: Path | bytes, is_path: bool = True) -> str:
    """``tf.lite.experimental.Analyzer.analyze`` with its printed report captured at the file-descriptor level."""
    import tensorflow as tf

    with captured_stdout() as out:
        if is_path:
            tf.lite.experimental.Analyzer.analyze(model_path=str(source), gpu_compatibility=True)
        else:
            tf.lite.experimental.Analyzer.analyze(model_content=source, gpu_compatibility=True)
    return out[0]


@contextlib.contextmanager
def captured_stdout() -> Iterator[list[str]]:
    """Collect everything written to stdout meanwhile, by Python or by native code, into ``out[0]``."""
    import io
    import tempfile

    out = [""]
    sys.stdout.flush()
    saved = os.dup(1)
    buffer = io.StringIO()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            with contextlib.redirect_stdout(buffer):
                yield out
        finally:
            _flush_c_stdout()
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            out[0] = buffer.getvalue() + sink.read().decode(errors="replace")


def _flush_c_stdout() -> None:
    """Flush C's stdio buffer, so text native code printed lands in the capture, not after it."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


_CANARY: list[bool] = []


def _analyzer_effective() -> bool:
    """Whether the analyzer refuses a custom op no GPU delegate implements (measured once per process)."""
    if not _CANARY:
        text, _ = _analyzer_text(_canary_model(), is_path=False)
        _CANARY.append(_ANALYZER_WARNING in text)
    return _CANARY[0]


def _canary_model() -> bytes:
    """A one-op TFLite model whose op (custom "OndeviceCanary") no GPU delegate implements."""
    import flatbuffers

    s = _tflite_schema()
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    code.customCode = "OndeviceCanary"
    graph = s.SubGraphT()
    graph.tensors = []
    for name in ("x", "y"):
        tensor = s.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1, 4], s.TensorType.FLOAT32, 0, name
        graph.tensors.append(tensor)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    graph.inputs, graph.outputs, graph.operators = [0], [1], [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], [s.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---- ONNX: onnxruntime's mobile execution providers -----------------------------------------------

# backend -> the supported-ops table onnxruntime's usability checker reads (None: NNAPI's own).
_ORT_BACKENDS = {
    "nnapi": None,
    "coreml": "coreml_supported_mlprogram_ops.md",
    "coreml-nn": "coreml_supported_neuralnetwork_ops.md",
}


@checker("onnx", tuple(_ORT_BACKENDS))
def _onnx(path: Path) -> dict[str, BackendCompatibility]:
    """NNAPI and CoreML (ML Program, NeuralNetwork) partitions from onnxruntime's mobile usability checker.

    The model is first optimized at the basic level, as onnxruntime does before it makes a mobile
    (.ort) model, and shape inference is run so nodes with dynamic shapes count as unsupported.
    """
    import tempfile

    checker_module, model_utils = _ort_tools()
    with tempfile.TemporaryDirectory(prefix="ondevice-compat-") as tmp:
        optimized = Path(tmp) / "model.onnx"
        model_utils.optimize_model(path, optimized, use_external_initializers=True)
        model = model_utils.ModelProtoWithShapeInfo(optimized).model_with_shape_info
    return {backend: _ort_backend(checker_module, model, backend, table) for backend, table in _ORT_BACKENDS.items()}


def _ort_tools() -> tuple[Any, Any]:
    """onnxruntime's usability checker and model utilities, without the torch import they do not need.

    ``onnxruntime/tools/__init__.py`` imports a PyTorch export helper whenever torch is installed
    (1.5 s of the check's 1.9 s here); torch is hidden for that import only, and importable again after.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # type: ignore[assignment]  # find_spec("torch") now answers None
    try:
        from onnxruntime.tools import onnx_model_utils
        from onnxruntime.tools.mobile_helpers import usability_checker
    finally:
        if hide and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return usability_checker, onnx_model_utils


def _ort_backend(checker_module: Any, model: Any, backend: str, table: str | None) -> BackendCompatibility:
    def run(fixed: bool) -> Any:
        if table is None:
            return checker_module.check_nnapi_partitions(model, fixed)
        return checker_module.check_coreml_partitions(model, fixed, table)

    note = None
    try:
        info = run(True)
    except ValueError as exc:  # no shape information: the checker cannot judge dynamic shapes
        info, note = run(False), f"shapes not inferred ({exc}); dynamic-shape limits not checked"
    unsupported = {
        op.split(":", 1)[1] if op.startswith("ai.onnx:") else op
        for op in {*info.unsupported_ops, *info.ops_with_unsupported_rank}
    }
    details = {
        "method": f"onnxruntime usability_checker ({table or 'nnapi_supported_ops.md'})",
        "suitability": info.suitability().name if info.num_nodes else None,
        "nodes_unsupported": {
            "op": info.nodes_unsupported_due_to_op,
            "dynamic_shape": info.nodes_unsupported_due_to_dynamic_input,
            "rank": info.num_unsupported_nodes_due_to_rank,
        },
        # Limits the checker lists but does not verify (e.g. NNAPI: "Only 2D Conv is supported").
        "caveats": info.supported_ops_checker.get_caveats(),
    }
    if note:
        details["note"] = note
    return BackendCompatibility(
        backend,
        True,
        info.num_supported_nodes == info.num_nodes,
        info.num_nodes,
        info.num_supported_nodes,
        tuple(sorted(unsupported)),
        info.num_partitions,
        details=details,
    )


# ---- OpenVINO: the device plugins ------------------------------------------------------------------

_OV_STRUCTURAL = ("Parameter", "Constant", "Result")


@checker("openvino", ("cpu", "gpu", "npu"))
def _openvino(path: Path) -> dict[str, BackendCompatibility]:
    """``Core.query_model`` per device plugin; a device OpenVINO does not list here is recorded as not checked."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    available = list(core.available_devices)
    out: dict[str, BackendCompatibility] = {}
    for backend in ("cpu", "gpu", "npu"):
        device = next((d for d in available if d.split(".")[0] == backend.upper()), None)
        if device is None:
            out[backend] = not_checked(
                backend,
                f"plugin absent: OpenVINO lists no {backend.upper()} device here "
                f"(available: {', '.join(available) or 'none'})",
            )
            continue
        out[backend] = _query(core, model, device, backend)
    return out


def _query(core: Any, model: Any, device: str, backend: str) -> BackendCompatibility:
    taken = core.query_model(model, device)  # friendly name -> device, for the ops the plugin supports
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in _OV_STRUCTURAL]
    index = {op.get_name(): i for i, op in enumerate(ops)}
    edges = [
        (index[src], i)
        for i, op in enumerate(ops)
        for value in op.inputs()
        if (src := value.get_source_output().get_node().get_name()) in index
    ]
    ok = [op.get_friendly_name() in taken for op in ops]
    return measured(
        backend,
        [op.get_type_name() for op in ops],
        ok,
        partitions(list(range(len(ops))), edges, {i for i, good in enumerate(ok) if good}),
        method=f"openvino Core.query_model on {device}",
        device=device,
    )
