"""Keras → ONNX without TensorFlow's graph: the saved Keras 3 model reloaded under the torch backend in a
fresh process and exported by torch.onnx.

The TF-graph strategies depend on tf2onnx reading what TensorFlow emitted; Keras runs grouped and
depthwise convolutions as XLA-compiled calls that tf2onnx leaves un-inlined, and TFLite's GELU
builtin is one tf2onnx cannot read. Under the torch backend the same layers are plain torch ops.
"""

from __future__ import annotations

import os

from ondevice.core.isolate import IsolatedFailure, call_isolated
from ondevice.core.lazy import require

from ._common import one_line, package_versions
from ._dynamic import all_fixed
from ._keras import NotReloadable, input_signature, keras_model_file, output_names
from ._torch import quiet_torch_export
from .registry import ConversionJob, Converted, StrategyFailed, strategy

_TIMEOUT_S = 900
# The backend is chosen when keras is first imported, so only a fresh process can have it.
_BACKEND_ENV = {"KERAS_BACKEND": "torch"}
_STATIC = "the Keras model is exported under the torch backend at the example's sizes"


@strategy(
    "keras",
    "onnx",
    "keras-onnx-torch",
    order=30,
    summary="the .keras file reloaded under Keras's torch backend (fresh process), torch.onnx export; fixed shapes",
)
def convert_torch_backend(job: ConversionJob) -> Converted:
    """Export through torch; the ONNX graph keeps Keras's layout (channels last), so no I/O transpose."""
    out = job.workdir / "model.onnx"
    model_path, temporary = keras_model_file(job)
    kwargs = {
        "model_path": str(model_path),
        "inputs": input_signature(job),
        "outputs": output_names(job),
        "out_path": str(out),
    }
    try:
        done = call_isolated(f"{__name__}:export_file", kwargs, timeout=_TIMEOUT_S, env=_BACKEND_ENV)
    except IsolatedFailure as exc:
        reason = exc.message if exc.kind == "raised" else exc.reason
        raise StrategyFailed(f"torch-backend export failed: {reason}") from exc
    finally:
        if temporary:
            model_path.unlink(missing_ok=True)
    notes = [f"Keras reloaded under the torch backend, exported by torch.onnx ({done['exporter']})"]
    return Converted(path=out, versions=done["versions"], notes=notes + all_fixed(job, _STATIC)[1])


def export_file(model_path: str, inputs: list, outputs: list, out_path: str) -> dict:
    """Reload the Keras file under the torch backend and write ONNX at ``out_path``; runs inside call_isolated."""
    if os.environ.get("KERAS_BACKEND") != "torch":
        raise StrategyFailed("KERAS_BACKEND is not torch in the export process")
    keras = require("keras")
    torch = require("torch")
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:
        raise NotReloadable(f"cannot reload the Keras model under the torch backend: {one_line(exc)}") from exc
    wrapper = _flat_module(keras, model, outputs).eval()
    args = tuple(torch.zeros(shape, dtype=getattr(torch, dtype)) for _, shape, dtype in inputs)
    names = outputs if len(outputs) == len(wrapper(*args)) else None
    exporter = _export(torch, wrapper, args, [n for n, _, _ in inputs], names, out_path)
    return {"versions": package_versions("keras", "torch", "onnx"), "exporter": exporter}


def _export(torch, wrapper, args, input_names, output_names, out_path) -> str:
    """The dynamo exporter, else TorchScript's (some Keras ops trace but do not torch.export); its name."""
    errors = []
    for dynamo in (True, False):
        options = {"dynamo": True, "external_data": False, "report": False} if dynamo else {"opset_version": 17}
        try:
            with torch.no_grad(), quiet_torch_export():
                torch.onnx.export(
                    wrapper,
                    args,
                    out_path,
                    input_names=input_names,
                    output_names=output_names,
                    verbose=False,
                    **({"dynamo": False} | options),
                )
            return "dynamo" if dynamo else "TorchScript"
        except Exception as exc:
            errors.append(f"{'dynamo' if dynamo else 'TorchScript'}: {one_line(exc)}")
    raise StrategyFailed("; ".join(errors))


def _flat_module(keras, model, outputs):
    """A torch module calling the Keras model positionally and returning its outputs as a flat tuple."""
    import torch  # only ever called in the export process, which imported it already

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            result = self.model(list(args) if len(args) > 1 else args[0], training=False)
            if isinstance(result, dict) and set(outputs) == set(result):
                return tuple(result[name] for name in outputs)
            return tuple(keras.tree.flatten(result))

    return Flat()
