"""TFLite (LiteRT) quantization.

Keras sources go through the TFLiteConverter again (fixed-shape concrete function, as the float
route) with optimizations and a representative dataset; every source, Keras included when that
fails cleanly, goes through ai-edge-quantizer applied to the float ``.tflite``. Both run in a
fresh process: the converter's int8 calibrator segfaults on Keras 3 LSTMs (measured; docs/quantization.md).

Full-integer models keep float32 inputs and outputs (quantize/dequantize at the edges) unless
``int8_io`` asks for int8 ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from ondevice.core.isolate import SIGNAL, IsolatedFailure, call_isolated
from ondevice.core.lazy import require

from ._common import package_versions
from ._keras import (
    ConverterFailed,
    converter_reason,
    input_signature,
    keras_model_file,
    output_names,
    serving_function,
    variable_holder,
)
from .registry import Converted, ConverterCrashed, QuantizeJob, StrategyFailed, quantizer

_TIMEOUT_S = 900


def _isolated(target: str, kwargs: dict, what: str):
    try:
        return call_isolated(target, kwargs, timeout=_TIMEOUT_S)
    except IsolatedFailure as exc:
        if exc.kind == SIGNAL:
            raise ConverterCrashed(f"{what} crashed: {exc.reason}", exc.signal_name) from exc
        # Our own failures are already phrased as one line; anything else keeps its type name.
        reason = exc.message if exc.raised(StrategyFailed, ConverterFailed) else exc.reason
        raise StrategyFailed(f"{what} failed: {reason}") from exc


def _save_calibration(job: QuantizeJob) -> str | None:
    if not job.calibration:
        return None
    from ondevice.core.samples import save_samples

    path = job.workdir / "calibration.npz"
    save_samples(path, job.calibration)
    return str(path)


# ---- Keras sources: the TFLiteConverter with optimizations ------------------------------------


@quantizer(
    "tflite",
    ("fp16", "dynamic-int8", "int8"),
    "tflite-keras-converter",
    order=10,
    frameworks=("keras",),
    summary="TFLiteConverter on the Keras model: fp16 weights, dynamic range, or full integer with a "
    "representative dataset (subprocess)",
)
def keras_converter(job: QuantizeJob) -> Converted:
    """Re-convert the Keras model with the precision's converter options."""
    model_path, temporary = keras_model_file(job)
    out = job.output_path(".tflite")
    kwargs = {
        "model_path": str(model_path),
        "out_path": str(out),
        "samples_path": _save_calibration(job),
        "spec": {
            "inputs": input_signature(job),
            "outputs": output_names(job),
            "input_names": job.input_names,
            "precision": job.precision,
            "int8_io": job.int8_io,
        },
    }
    try:
        versions = _isolated("ondevice.converters.quantize_tflite:keras_worker", kwargs, "TFLiteConverter quantization")
    finally:
        if temporary:
            model_path.unlink(missing_ok=True)
    return Converted(out, versions=versions, notes=_io_note(job))


def keras_worker(model_path: str, out_path: str, samples_path: str | None, spec: dict) -> dict:
    """Runs in a fresh process: reload the Keras model and write a quantized .tflite.

    ``spec`` (JSON): the serving signature's ``inputs`` and ``outputs``, the calibration samples'
    ``input_names`` in feed order, the ``precision``, and ``int8_io``.
    """
    tf = require("tensorflow")
    keras = require("keras")
    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    precision, input_names = spec["precision"], spec["input_names"]
    serve = serving_function(model, spec["inputs"], spec["outputs"])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], variable_holder(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        samples = _load(samples_path)
        converter.representative_dataset = lambda: ([s[name] for name in input_names] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if spec["int8_io"] else tf.float32
        converter.inference_input_type = converter.inference_output_type = io_type
    try:
        blob = converter.convert()
    except Exception as exc:
        raise ConverterFailed(converter_reason(exc)) from exc
    Path(out_path).write_bytes(blob)
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def _load(samples_path: str | None) -> list[dict]:
    from ondevice.core.samples import load_samples_file

    if not samples_path:
        raise StrategyFailed("int8 needs calibration samples")
    return load_samples_file(Path(samples_path))


def _io_note(job: QuantizeJob) -> list[str]:
    if job.precision != "int8":
        return []
    return [
        "int8 inputs and outputs (scale and zero point in the model)"
        if job.int8_io
        else "float32 inputs and outputs around an int8 model"
    ]


# ---- any source: ai-edge-quantizer on the float .tflite ---------------------------------------


@quantizer(
    "tflite",
    ("fp16", "dynamic-int8", "int8"),
    "tflite-ai-edge-quantizer",
    order=20,
    keeps_float=True,
    summary="ai-edge-quantizer on the float .tflite: fp16 weights, int8 dynamic, or static int8 "
    "weights and activations calibrated on the samples (subprocess); --keep-float ops through "
    "a no_quantize recipe entry per op",
)
def edge_quantizer(job: QuantizeJob) -> Converted:
    """Quantize the float .tflite with an ai-edge-quantizer recipe for the precision."""
    out = job.output_path(".tflite")
    kwargs = {
        "float_path": str(job.float_artifact.path),
        "out_path": str(out),
        "precision": job.precision,
        "samples_path": _save_calibration(job),
        "int8_io": job.int8_io,
        "keep_float": list(job.keep_float),
    }
    _isolated("ondevice.converters.quantize_tflite:edge_worker", kwargs, "ai-edge-quantizer")
    notes = _io_note(job)
    if job.keep_float:
        notes.append(f"kept in float (no_quantize recipe entries): {', '.join(job.keep_float)}")
    return Converted(out, versions=package_versions("ai-edge-quantizer", "ai-edge-litert"), notes=notes)


def edge_worker(
    float_path: str,
    out_path: str,
    precision: str,
    samples_path: str | None,
    int8_io: bool,
    keep_float: list | None = None,
) -> None:
    """Runs in a fresh process: apply the precision's recipe and write ``out_path``; the ops whose first
    output tensor is named in ``keep_float`` stay float (DEQUANTIZE before them, QUANTIZE after)."""
    aeq = require("ai_edge_quantizer.quantizer")
    recipe = require("ai_edge_quantizer.recipe")
    qtyping = require("ai_edge_quantizer.qtyping")
    calibration = None
    if precision == "fp16":
        qt = aeq.Quantizer(float_path)
        qt.add_weight_only_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            num_bits=16,
            algorithm_key=aeq.AlgorithmName.FLOAT_CASTING,
        )
    elif precision == "dynamic-int8":
        qt = aeq.Quantizer(float_path, recipe.dynamic_wi8_afp32())
    else:
        qt = aeq.Quantizer(float_path, recipe.static_wi8_ai8())
        for name in keep_float or ():
            # An op's scope is its output tensor names, each followed by ";"; the last matching entry wins.
            qt.update_quantization_recipe(
                regex=f"(^|;){re.escape(name)};",
                operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                algorithm_key=aeq.AlgorithmName.NO_QUANTIZE,
            )
        calibration = _min_max_ranges(float_path, qt.get_quantization_recipe(), _load(samples_path))
    qt.quantize(calibration, enable_progress_report=False).export_model(out_path, overwrite=True)
    if precision == "int8" and not int8_io:
        # ai-edge-quantizer quantizes the graph's inputs and outputs themselves; put float edges back.
        float_interface(out_path)


def _min_max_ranges(float_path: str, static_recipe, samples: list[dict]) -> dict:
    """Activation ranges as the global min/max over the samples.

    Quantizer.calibrate keeps a moving average of each sample's extremes, which clips the tails:
    on the test transformer that gave SNR 10 dB against 24 dB with global min/max (the rule the
    onnxruntime and NNCF quantizers here use too).
    """
    calibrator = require("ai_edge_quantizer.calibrator")
    recipe_manager = require("ai_edge_quantizer.recipe_manager")
    qsv_utils = require("ai_edge_quantizer.utils.qsv_utils")
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(static_recipe)
    calib = calibrator.Calibrator(float_path, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate(_signature_samples(float_path, samples), manager)
    return calib.get_model_qsvs()


def _signature_samples(float_path: str, samples: list[dict]) -> dict:
    """Samples keyed by tensor name, re-keyed by signature input name as ai-edge-quantizer wants."""
    from ondevice.core.specs import clean_name

    interpreter = require("ai_edge_litert.interpreter").Interpreter(model_path=float_path)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise StrategyFailed(f"the float .tflite has {len(signatures)} signatures; calibration needs exactly one")
    key = next(iter(signatures))
    by_index = {d["index"]: clean_name(d["name"]) for d in interpreter.get_input_details()}
    inputs = interpreter.get_signature_runner(key).get_input_details()
    names = {sig_name: by_index[detail["index"]] for sig_name, detail in inputs.items()}
    return {key: [{sig_name: sample[tensor] for sig_name, tensor in names.items()} for sample in samples]}


def float_interface(path: str) -> None:
    """Give an int8-interface .tflite float32 inputs and outputs: QUANTIZE in, DEQUANTIZE out."""
    fb = require("ai_edge_litert.tools.flatbuffer_utils")
    schema = require("ai_edge_litert.schema_py_generated")
    model = fb.read_model(path)
    graph = model.subgraphs[0]
    quantize = _opcode(model, schema, schema.BuiltinOperator.QUANTIZE)
    dequantize = _opcode(model, schema, schema.BuiltinOperator.DEQUANTIZE)
    head, tail = [], []
    for index in list(graph.inputs):
        if graph.tensors[index].type in (schema.TensorType.INT8, schema.TensorType.UINT8):
            new = _float_twin(graph, schema, index)
            head.append(_op(schema, quantize, new, index))
            _remap(model, graph, index, new, inputs=True)
    for index in list(graph.outputs):
        if graph.tensors[index].type in (schema.TensorType.INT8, schema.TensorType.UINT8):
            new = _float_twin(graph, schema, index)
            tail.append(_op(schema, dequantize, index, new))
            _remap(model, graph, index, new, inputs=False)
    graph.operators = head + list(graph.operators) + tail
    fb.write_model(model, path)


def _opcode(model, schema, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if code.builtinCode == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 2  # version 2 of QUANTIZE/DEQUANTIZE is the int8 kernel
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _float_twin(graph, schema, index: int) -> int:
    """A float32 tensor shaped like tensor ``index``; it takes over that tensor's name."""
    old = graph.tensors[index]
    twin = schema.TensorT()
    twin.shape, twin.shapeSignature = old.shape, old.shapeSignature
    twin.type, twin.buffer, twin.name = schema.TensorType.FLOAT32, 0, old.name
    old.name = (old.name or b"") + b"_int8"
    graph.tensors.append(twin)
    return len(graph.tensors) - 1


def _op(schema, opcode: int, source: int, dest: int):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [source], [dest]
    return op


def _remap(model, graph, old: int, new: int, inputs: bool) -> None:
    """Point the graph's (and its signature's) input or output at the float twin."""
    ports = graph.inputs if inputs else graph.outputs
    ports[list(ports).index(old)] = new
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex != 0:
            continue
        for entry in (signature.inputs if inputs else signature.outputs) or []:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
