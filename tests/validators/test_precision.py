"""validators/precision.py on hand-built ONNX graphs, IRs and TFLite flatbuffers (no converter runs).

Real exported artifacts are inspected in tests/converters/test_quantize.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from ondevice.validators.precision import check_precision, inspect

# ---- ONNX ------------------------------------------------------------------------------------


def _onnx_model(path, weight_dtype=np.float32, nodes=()):
    """x[1,4] @ W[4,3] -> y, with W stored as ``weight_dtype`` and optional extra marker nodes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=weight_dtype).reshape(4, 3), "W")
    graph_nodes = [
        helper.make_node("Cast", ["W"], ["Wf"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "Wf"], ["y"]),
        *nodes,
    ]
    graph = helper.make_graph(
        graph_nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_float32_graph_is_fp32(tmp_path):
    path = _onnx_model(tmp_path / "m.onnx")
    info = inspect(path, "onnx")
    assert info.precision == "fp32"
    assert info.weight_bytes == {"float32": 48}
    assert info.io_dtypes == {"x": "float32", "y": "float32"}
    assert check_precision(path, "onnx", None)


def test_onnx_fp16_weights_requested_at_fp32_are_flagged(tmp_path):
    path = _onnx_model(tmp_path / "m.onnx", np.float16)
    found = check_precision(path, "onnx", None)
    assert not found and found.found == "fp16" and found.requested == "fp32"
    assert "fp16 found where fp32 was requested" in found.problem and "silently" in found.problem
    assert check_precision(path, "onnx", "fp16")


def test_onnx_quantize_linear_is_static_int8_and_integer_matmul_is_dynamic(tmp_path):
    from onnx import helper

    static = _onnx_model(tmp_path / "s.onnx", np.int8, [helper.make_node("QuantizeLinear", ["y", "s"], ["q"])])
    dynamic = _onnx_model(tmp_path / "d.onnx", np.int8, [helper.make_node("MatMulInteger", ["a", "b"], ["c"])])
    weights_only = _onnx_model(tmp_path / "w.onnx", np.int8)
    assert inspect(static, "onnx").precision == "int8"
    assert inspect(static, "onnx").evidence == {"QuantizeLinear": 1}
    assert inspect(dynamic, "onnx").precision == "dynamic-int8"
    assert inspect(weights_only, "onnx").precision == "dynamic-int8"
    mismatch = check_precision(dynamic, "onnx", "int8")
    assert not mismatch and "dynamic-int8 found where int8 was requested" in mismatch.problem


# ---- OpenVINO IR -----------------------------------------------------------------------------


def _ir(path, compress_to_fp16: bool):
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 64], np.float32, name="x")
    weight = ops.constant(np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32))
    model = ov.Model([ops.matmul(x, weight, False, False)], [x], "tiny")
    ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)
    return path


def test_ir_saved_with_default_compression_is_fp16_and_flagged_at_fp32(tmp_path):
    """OpenVINO's save_model default: fp16 weights. Requested at fp32, that is a silent change."""
    kept = _ir(tmp_path / "f32.xml", compress_to_fp16=False)
    compressed = _ir(tmp_path / "f16.xml", compress_to_fp16=True)
    assert inspect(kept, "openvino").precision == "fp32"
    assert inspect(kept, "openvino").weight_bytes["float32"] == 64 * 32 * 4
    info = inspect(compressed, "openvino")
    assert info.precision == "fp16" and info.weight_bytes["float16"] == 64 * 32 * 2
    found = check_precision(compressed, "openvino", None)
    assert not found and found.to_json()["evidence"] == {"float16 constants": 64 * 32 * 2}


# ---- TFLite ----------------------------------------------------------------------------------


def _tflite(path, weight_type: str, activation_type: str):
    """One FULLY_CONNECTED op: input[1,8] x weights[4,8] -> output[1,4], with the given tensor types."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    types = {
        "float32": (schema.TensorType.FLOAT32, np.float32),
        "float16": (schema.TensorType.FLOAT16, np.float16),
        "int8": (schema.TensorType.INT8, np.int8),
    }
    model = schema.ModelT()
    model.version = 3
    empty, weights = schema.BufferT(), schema.BufferT()
    weights.data = np.ones((4, 8), types[weight_type][1]).tobytes()
    model.buffers = [empty, weights]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    graph = schema.SubGraphT()
    graph.tensors = [
        _tensor(schema, "input", [1, 8], types[activation_type][0], 0, activation_type == "int8"),
        _tensor(schema, "weights", [4, 8], types[weight_type][0], 1, weight_type == "int8"),
        _tensor(schema, "output", [1, 4], types[activation_type][0], 0, activation_type == "int8"),
    ]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    graph.operators, graph.inputs, graph.outputs = [op], [0], [2]
    model.subgraphs = [graph]
    flatbuffer_utils.write_model(model, str(path))
    return path


def _tensor(schema, name, shape, dtype, buffer, quantized):
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, dtype, buffer
    if quantized:
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [0.1], [0]
    return tensor


@pytest.mark.parametrize(
    "weights,activations,expected",
    [
        ("float32", "float32", "fp32"),
        ("float16", "float32", "fp16"),
        ("int8", "float32", "dynamic-int8"),
        ("int8", "int8", "int8"),
    ],
)
def test_tflite_tensor_types_decide_the_precision(tmp_path, weights, activations, expected):
    path = _tflite(tmp_path / "m.tflite", weights, activations)
    info = inspect(path, "tflite")
    assert info.precision == expected
    assert info.weight_bytes == {weights: 32 * np.dtype(weights).itemsize}
    assert info.io_dtypes == {"input": activations, "output": activations}
    assert bool(check_precision(path, "tflite", None if expected == "fp32" else expected))
    assert not check_precision(path, "tflite", "fp16" if expected != "fp16" else "int8")


def test_unknown_target_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown target"):
        inspect(tmp_path / "m.bin", "coreml")


def test_a_few_integer_bytes_are_not_quantization():
    """A float32 IR of a Keras LSTM holds a 3-byte u8 constant; that is no int8 model."""
    from ondevice.validators.precision import _classify

    assert _classify({"float32": 40_000, "uint8": 3}, static=False, dynamic=False) == "fp32"
    assert _classify({"float32": 400, "int8": 3_000}, static=False, dynamic=False) == "dynamic-int8"
    assert _classify({"float32": 400, "float16": 5_000}, static=False, dynamic=False) == "fp16"
