"""Every intermediate tensor of one run, per runtime: what ``explain`` pairs across the converter boundary.

Each function runs a model once on ``feeds`` (the runner's own input names and layout) and returns
``validators.divergence.Tensor`` items in execution order. Sources are named by the user's names
(PyTorch module paths from forward hooks on leaf modules, Keras layer names); artifacts by their
tensor names and op types (onnxruntime with every node output made a graph output, LiteRT with all
tensors preserved, OpenVINO with an output added on every op). ``limit_bytes`` caps what one capture
keeps, so a large model cannot exhaust memory: tensors past the cap are dropped and counted.
"""

from __future__ import annotations

import numpy as np

from ..core import lazy as _lazy
from ..core.quiet import quiet

LIMIT_BYTES = 1 << 30


def _tensor(name: str, op_type: str, value):
    from ondevice.validators.divergence import Tensor

    return Tensor(name, op_type, np.asarray(value))


class _Kept(list):
    """A list of tensors that stops growing at ``limit`` bytes (``dropped`` counts the rest)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.used, self.dropped = limit, 0, 0

    def keep(self, name: str, op_type: str, value) -> None:
        value = np.asarray(value)
        if self.used + value.nbytes > self.limit:
            self.dropped += 1
            return
        self.used += value.nbytes
        self.append(_tensor(name, op_type, value))


def torch_layers(model, feeds: dict, input_names: list[str], limit_bytes: int = LIMIT_BYTES) -> _Kept:
    """Outputs of every leaf module, named by module path, in call order.

    Runs with autograd enabled (outputs detached): in inference mode nn.TransformerEncoderLayer takes a
    fused fast path that skips its submodules, and their hooks would never fire.
    """
    torch = _lazy.require("torch")
    kept = _Kept(limit_bytes)
    hooks = []
    for path, module in model.named_modules():
        if path and not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(_hook(kept, path, type(module).__name__)))
    try:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names]
        with torch.enable_grad():
            model(*args)
    finally:
        for hook in hooks:
            hook.remove()
    return kept


def _hook(kept: _Kept, path: str, kind: str):
    def record(_module, _inputs, output):
        first = output[0] if isinstance(output, (tuple, list)) and output else output
        if hasattr(first, "detach") and first.is_floating_point():
            kept.keep(path, kind, first.detach().cpu().numpy())

    return record


def keras_layers(model, feeds: dict, input_names: list[str], limit_bytes: int = LIMIT_BYTES) -> _Kept:
    """Outputs of every layer of a functional Keras model, by layer name, in the model's layer order."""
    keras = _lazy.require("keras")
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    probe = keras.Model(model.inputs, [_first(layer.output) for layer in layers])
    args = [feeds[n] for n in input_names]
    with quiet():
        values = probe(args if len(args) > 1 else args[0], training=False)
    kept = _Kept(limit_bytes)
    for layer, value in zip(layers, values if isinstance(values, (list, tuple)) else [values], strict=True):
        value = np.asarray(value)
        if value.dtype.kind == "f":
            kept.keep(layer.name, type(layer).__name__, value)
    return kept


def _first(output):
    return output[0] if isinstance(output, (list, tuple)) else output


def onnx_tensors(path, feeds: dict, threads: int = 1, limit_bytes: int = LIMIT_BYTES) -> _Kept:
    """Every float node output of an ONNX model, made a graph output, in node order."""
    onnx = _lazy.require("onnx")
    ort = _lazy.require("onnxruntime")
    model = onnx.load(str(path))
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    existing = {o.name for o in model.graph.output}
    order, op_types = [], {}
    constant = constant_tensors(model.graph)
    for node in model.graph.node:
        for name in node.output:
            real = types.get(name) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
            if name and name not in constant and real:
                order.append(name)
                op_types[name] = node.op_type
                if name not in existing:
                    model.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name], None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # No graph optimisation: fused nodes would drop the intermediate outputs asked for.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(order, feeds)
    kept = _Kept(limit_bytes)
    for name, value in zip(order, values, strict=True):
        kept.keep(name, op_types[name], value)
    return kept


def constant_tensors(graph) -> set:
    """Node outputs computed from initializers alone (a QDQ model's dequantized weights): parameters,
    not layer outputs; a bias named ``project.bias`` was paired with layer ``project`` by name."""
    constant = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" or (node.input and all(not i or i in constant for i in node.input)):
            constant.update(o for o in node.output if o)
    return constant


def tflite_tensors(path, feeds: list, threads: int = 1, limit_bytes: int = LIMIT_BYTES) -> _Kept:
    """Every op output of a .tflite model (all tensors preserved), in op order, named by tensor name.

    ``feeds``: one array per input, in the interpreter's input order."""
    interpreter_cls = _lazy.require("ai_edge_litert.interpreter").Interpreter
    interp = interpreter_cls(model_path=str(path), num_threads=threads, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), feeds, strict=True):
        interp.set_tensor(detail["index"], np.ascontiguousarray(value, dtype=detail["dtype"]))
    interp.invoke()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    kept = _Kept(limit_bytes)
    for op in interp._get_ops_details():  # the only way to map tensors to the ops that make them
        if op["op_name"] == "DELEGATE":
            continue
        for index in op["outputs"]:
            detail = details.get(int(index))
            if detail is None:
                continue
            value = _real_value(detail, lambda i=int(index): interp.get_tensor(i))
            if value is not None:
                kept.keep(detail["name"], op["op_name"], value)
    return kept


def _real_value(detail: dict, read):
    """A tensor's real values: float as stored, integer activations dequantized by their one scale and
    zero point (a full-integer model's layers are int8 tensors; skipping them left nothing to pair but
    the output). Integers without one scale (indices, shapes) are not real values: None."""
    kind = np.dtype(detail["dtype"]).kind
    if kind == "f":
        return read()
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales"), params.get("zero_points")
    if kind not in "iu" or scales is None or zeros is None or len(scales) != 1:
        return None
    return ((read().astype(np.float32) - np.float32(zeros[0])) * np.float32(scales[0])).astype(np.float32)


def openvino_tensors(path, feeds: list, threads: int = 1, limit_bytes: int = LIMIT_BYTES) -> _Kept:
    """Every op output of an OpenVINO model, with an output added on each op, in topological order.

    ``feeds``: one array per model input, in order."""
    ov = _lazy.require("openvino")
    core = ov.Core()
    model = core.read_model(str(path))
    skip = {"Parameter", "Constant", "Result"}
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in skip]
    outputs = [(op, i) for op in ops for i in range(op.get_output_size()) if op.get_output_element_type(i).is_real()]
    model.add_outputs([op.output(i) for op, i in outputs])  # an op output that already is one is not added twice
    where = {}
    for number, port in enumerate(model.outputs):
        node = port.get_node()
        fed = node.input_value(0) if node.get_type_name() == "Result" else port  # the op output a Result holds
        where[(fed.get_node().get_friendly_name(), fed.get_index())] = number
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    request.infer(feeds)
    kept = _Kept(limit_bytes)
    for op, i in outputs:
        found = where.get((op.get_friendly_name(), i))
        if found is not None:
            kept.keep(op.get_friendly_name(), op.get_type_name(), np.array(request.get_output_tensor(found).data))
    return kept
