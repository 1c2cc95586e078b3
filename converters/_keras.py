"""What the Keras routes share: the source's signature and output names, a serving tf.function,
the variables a converter freezes, and TFLiteConverter run in a fresh process.

Keras 3 recurrent models (Embedding→LSTM, Conv1D→GRU, Bidirectional LSTM, even a plain LSTM
stack) fail ``from_keras_model`` with "TensorListReserve requires element_shape to be static"
when their batch axis is None; a concrete function whose input signature fixes every shape to
the example's converts them all. The converter can segfault (int8 calibration of an LSTM), so
it runs in a fresh process that reloads the model from a ``.keras`` file.
"""

from __future__ import annotations

import re
from pathlib import Path

from ondevice.core.isolate import IsolatedFailure, call_isolated
from ondevice.core.lazy import require
from ondevice.core.specs import concrete_shape

from ._dynamic import all_fixed, requested
from .registry import ConversionJob, QuantizeJob, StrategyFailed

_TIMEOUT_S = 900
# A free batch axis is what breaks recurrent models here (see above), so every axis is fixed.
TFLITE_STATIC = "TFLiteConverter converts a concrete function at the example's sizes"
_KERAS_FILES = (".keras", ".h5")


def input_signature(job: ConversionJob | QuantizeJob, keep_dynamic: bool = False) -> list[list]:
    """The source inputs as JSON-able ``[name, shape, dtype]``, every axis fixed (batch = example's).

    With ``keep_dynamic`` the axes of ``job.dynamic`` are None, for converters that keep them.
    """
    dynamic = requested(job) if keep_dynamic else {}
    return [
        [
            spec.name,
            [None if axis in dynamic.get(spec.name, []) else size for axis, size in enumerate(concrete_shape(spec))],
            str(spec.dtype),
        ]
        for spec in job.source.inputs
    ]


def output_names(job: ConversionJob | QuantizeJob) -> list[str]:
    """The names the artifact's outputs should carry: the source's, else the model's own."""
    names = [spec.name for spec in job.source.outputs or []]
    return names or list(getattr(job.source.model, "output_names", None) or [])


def serving_function(model, inputs: list[list], outputs: list[str]):
    """A tf.function calling ``model`` on fixed-shape inputs and returning ``{output name: tensor}``.

    The TensorSpec names become the input names of the TFLite signature and of the ONNX graph;
    the dict keys become their output names.
    """
    tf = require("tensorflow")
    specs = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=name) for name, shape, dtype in inputs]

    @tf.function(input_signature=specs)
    def serve(*args):
        # A functional model with several inputs takes them as a list in positional order.
        result = model(list(args) if len(args) > 1 else args[0], training=False)
        return _named_outputs(tf, result, outputs)

    return serve


def _named_outputs(tf, result, names: list[str]) -> dict:
    if isinstance(result, dict):
        return dict(result)
    flat = tf.nest.flatten(result)
    if len(names) != len(flat):
        names = [f"output_{i}" for i in range(len(flat))]
    return dict(zip(names, flat, strict=True))


def variable_holder(model):
    """A tf.Module tracking the model's TF variables, so converters can freeze them.

    Keras 3 variables wrap a tf.Variable (``.value``); passing the Keras model itself to
    ``from_concrete_functions`` leaves the weights unread (NaN outputs, READ_VARIABLE errors).
    """
    tf = require("tensorflow")
    holder = tf.Module()
    holder.tracked = [_tf_variable(v) for v in model.variables]
    return holder


def _tf_variable(variable):
    inner = getattr(variable, "value", variable)
    return variable if callable(inner) else inner  # tf.Variable.value is a method


def batch_note(job: ConversionJob, kept: dict | None = None) -> list[str]:
    """A note when the Keras model's batch axis was free and conversion fixed it (not kept dynamic)."""
    tensors = getattr(job.source.model, "inputs", None) or []
    names = [spec.name for spec in job.source.inputs]
    # strict=False: a subclassed model has no symbolic ``inputs``, so nothing to pair and no note.
    free = [name for name, t in zip(names, tensors, strict=False) if t.shape and t.shape[0] is None]
    if any(0 not in (kept or {}).get(name, []) for name in free):
        batch = concrete_shape(job.source.inputs[0])[0] if job.source.inputs else 1
        return [f"batch axis fixed to {batch} for conversion"]
    return []


# ---- TFLiteConverter, in a fresh process ------------------------------------------------------


class ConverterFailed(RuntimeError):
    """The conversion failed for a reason already phrased as one line."""


class NotReloadable(ConverterFailed):
    """A fresh process cannot load the saved Keras model (custom or Lambda layers its module does not register)."""


class NotPortable(StrategyFailed):
    """The Keras model cannot reach a fresh process: it cannot be saved, or not loaded again there."""


def convert_file(model_path: str, inputs: list, outputs: list, out_path: str, mode: str) -> dict:
    """Reload a Keras file and write ``out_path`` (.tflite); runs inside call_isolated."""
    keras = require("keras")
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise NotReloadable(
            "cannot reload the Keras model in a fresh process (custom or Lambda layers?): "
            f"{type(exc).__name__}: {first}"
        ) from exc
    return convert_model(model, inputs, outputs, out_path, mode)


def convert_model(model, inputs: list, outputs: list, out_path: str, mode: str = "concrete") -> dict:
    """Convert a live Keras model to ``out_path``; ``mode`` is "concrete" or "keras" (from_keras_model)."""
    tf = require("tensorflow")
    keras = require("keras")
    if mode == "concrete":
        serve = serving_function(model, inputs, outputs)
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [serve.get_concrete_function()], variable_holder(model)
        )
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    try:
        blob = converter.convert()
    except Exception as exc:
        raise ConverterFailed(converter_reason(exc)) from exc
    Path(out_path).write_bytes(blob)
    # from_keras_model calls the outputs output_0, output_1, ... in the model's output order.
    name_tensors_after_signature(out_path, outputs if mode == "keras" else ())
    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def name_tensors_after_signature(tflite_path: str, numbered_outputs=()) -> None:
    """Give each signature input and output tensor its signature name, in place.

    The converter orders a dict-returning function's outputs by key and names the tensors
    ``StatefulPartitionedCall:<i>``: matched by order, a model returning (logits, mask, embedding)
    paired logits with the embedding. The SignatureDef keeps the real names; copying them onto the
    tensors lets any interpreter API match outputs by name. ``numbered_outputs`` names signature
    outputs called ``output_<i>`` after the i-th entry (the model's own output names).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite_path))
    for signature in model.signatureDefs or []:
        tensors = model.subgraphs[signature.subgraphIndex].tensors
        for item in signature.outputs or []:
            key = item.name.decode() if isinstance(item.name, bytes) else str(item.name)
            index = key.removeprefix("output_")
            if key.startswith("output_") and index.isdigit() and int(index) < len(numbered_outputs):
                item.name = numbered_outputs[int(index)].encode()
        for item in [*(signature.inputs or []), *(signature.outputs or [])]:
            tensors[item.tensorIndex].name = item.name
    flatbuffer_utils.write_model(model, str(tflite_path))


def converter_reason(exc: BaseException) -> str:
    """The converter's first MLIR error without its location prefix, else its first line."""
    text = str(exc)
    for line in text.splitlines():
        if "error:" not in line:
            continue
        op_error = re.search(r"('[\w.]+' op .+)$", line)
        return op_error.group(1) if op_error else line.split("error:", 1)[1].strip()
    lines = text.strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def keras_model_file(job) -> tuple[Path, bool]:
    """A Keras file the subprocess can load, and whether we wrote it (to remove afterwards)."""
    path = job.source.path
    if path is not None and Path(path).is_file() and Path(path).suffix.lower() in _KERAS_FILES:
        # Absolute: the subprocess runs in a scratch folder, not in the user's working directory.
        return Path(path).absolute(), False
    saved = job.workdir / "source.keras"
    try:
        job.source.model.save(str(saved))
    except Exception as exc:
        raise NotPortable(
            f"cannot save the Keras model for a subprocess: {type(exc).__name__}: "
            f"{(str(exc).strip().splitlines() or [''])[0][:200]}"
        ) from exc
    return saved, True


def run_isolated(job: ConversionJob, mode: str, out: Path) -> dict:
    """Convert in a fresh process to ``out``; returns the converter versions."""
    model_path, temporary = keras_model_file(job)
    kwargs = {
        "model_path": str(model_path),
        "inputs": input_signature(job),
        "outputs": output_names(job),
        "out_path": str(out),
        "mode": mode,
    }
    try:
        return call_isolated("ondevice.converters._keras:convert_file", kwargs, timeout=_TIMEOUT_S)
    except IsolatedFailure as exc:
        reason = exc.message if exc.raised(ConverterFailed) else exc.reason
        failed = NotPortable if exc.raised(NotReloadable) else StrategyFailed
        raise failed(f"TFLite conversion failed: {reason}") from exc
    finally:
        if temporary:
            model_path.unlink(missing_ok=True)


def run_inprocess(job: ConversionJob, out: Path) -> dict:
    try:
        return convert_model(job.source.model, input_signature(job), output_names(job), str(out))
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ConverterFailed) else converter_reason(exc)
        raise StrategyFailed(f"TFLite conversion failed: {reason[:300]}") from exc


def convert_to_tflite(job: ConversionJob, out: Path) -> tuple[Path, list[str]]:
    """A fixed-shape .tflite of the job's model at ``out`` for other routes; ``(path, notes)``.

    In a subprocess like the first strategy; in this process only when a fresh process cannot
    reload the model (custom layers its module does not register on import).
    """
    try:
        run_isolated(job, "concrete", out)
    except NotPortable:
        run_inprocess(job, out)
    return out, batch_note(job) + all_fixed(job, TFLITE_STATIC)[1]
