"""Turn a SOURCE (factory reference, model file or live object) into a Source."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .core import lazy as _lazy
from .core.errors import BadInputError, input_error, one_line
from .core.specs import TensorSpec, check_inputs, make_samples, merge_specs, spec_from_array
from .trust import check_pt2, check_sample_inputs, check_saved_model

FRAMEWORKS = ("torch", "keras", "onnx")


@dataclass
class Source:
    """A model ready to export and to run as the reference."""

    spec: str
    framework: str
    model: Any
    inputs: list[TensorSpec]
    example: dict[str, np.ndarray] | None = None
    path: Path | None = None
    outputs: list[TensorSpec] = field(default_factory=list)
    # What the export derives from the model once and several routes use (the torch.export program).
    derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def example_feeds(self) -> dict[str, np.ndarray]:
        """The example inputs, or one seeded sample when the source came without them."""
        if self.example:
            return self.example
        return make_samples(self.inputs, 1, seed=0)[0]

    def to_json(self) -> dict:
        return {
            "spec": self.spec,
            "framework": self.framework,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
        }


def framework_of(model: Any) -> str:
    """Which framework a live object belongs to, without importing any framework."""
    if isinstance(model, (str, Path)):
        return "onnx" if str(model).endswith(".onnx") else "file"
    if _lazy.is_instance_of(model, "torch", "nn.Module") or _lazy.is_instance_of(model, "torch.jit", "ScriptModule"):
        return "torch"
    if _lazy.is_instance_of(model, "keras", "Model") or _lazy.is_instance_of(model, "tf_keras", "Model"):
        return "keras"
    if _lazy.is_instance_of(model, "onnx", "ModelProto"):
        return "onnx"
    raise BadInputError(
        f"unsupported model object of type {type(model).__module__}.{type(model).__qualname__}: "
        "pass a torch.nn.Module, a keras.Model, an onnx.ModelProto or a model file path"
    )


def frameworks_of_spec(spec: str) -> tuple[str, ...]:
    """The frameworks SOURCE text may load as, read from its form alone (nothing imported or run): a
    ``file.py:factory`` or ``module:factory`` may build anything, a model file is its suffix's; none for a
    file that is not there (the load will say so)."""
    path = Path(spec)
    if ":" in spec and not path.exists() and not _is_windows_drive(spec):
        module = spec.rpartition(":")[0]
        return () if module.endswith(".py") and not Path(module).exists() else ("torch", "keras", "onnx")
    if not path.exists():
        return ()
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth", ".pt2"):
        return ("torch",)
    if suffix == ".onnx":
        return ("onnx",)
    return ("keras",) if suffix in (".keras", ".h5") or path.is_dir() else ()


def load_source(
    spec: str, declared: Sequence[TensorSpec] = (), trust_pickle: bool = False, trust_graph: bool = False
) -> Source:
    """Load SOURCE text as given on the command line; pickles and file-touching graphs only when trusted."""
    source = _load_source(spec, declared, trust_pickle, trust_graph)
    check_inputs(source.inputs, spec)
    return source


def _load_source(spec: str, declared, trust_pickle: bool, trust_graph: bool) -> Source:
    path = Path(spec)
    if ":" in spec and not path.exists() and not _is_windows_drive(spec):
        return _from_factory(spec, declared)
    if not path.exists():
        raise BadInputError(f"model not found: {spec}")
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return _from_saved_model(path, declared, spec, trust_graph)
        raise BadInputError(f"{spec} is a folder but not a SavedModel (no saved_model.pb)")
    loaders: dict[str, Callable[..., Source]] = {
        ".onnx": _from_onnx_file,
        ".keras": _from_keras_file,
        ".h5": _from_keras_file,
        ".pt2": _from_pt2,
        ".pt": _from_torch_file,
        ".pth": _from_torch_file,
    }
    if suffix not in loaders:
        raise BadInputError(
            f"unsupported model file {spec}: expected one of {', '.join(sorted(loaders))}, "
            "a SavedModel folder or file.py:factory"
        )
    if not path.is_file():
        raise BadInputError(f"model {spec} is not a regular file")
    if path.stat().st_size == 0:
        raise BadInputError(f"model file {spec} is empty")
    if suffix in (".pt", ".pth", ".pt2"):
        return loaders[suffix](path, declared, spec, trust_pickle)
    return loaders[suffix](path, declared, spec)


def from_object(
    model: Any, example_inputs: Any = None, declared: Sequence[TensorSpec] = (), spec: str = "<python object>"
) -> Source:
    """A Source from a live model and its example inputs (the Python API's entry)."""
    framework = framework_of(model)
    if framework in ("onnx", "file"):
        return load_source(str(model), declared)
    if framework == "torch":
        # An exported program's module refuses eval(); it has no train mode to leave.
        with contextlib.suppress(AttributeError, NotImplementedError, RuntimeError):
            model.eval()
        example = _normalise_example(example_inputs, _torch_input_names(model))
    else:
        example = _normalise_example(example_inputs, _keras_input_names(model))
    inferred = [spec_from_array(n, a) for n, a in example.items()] if example else []
    if framework == "keras" and not inferred:
        inferred = _keras_specs(model)
    inputs = merge_specs(declared, inferred)
    if not inputs:
        raise BadInputError("no example inputs and no --input given: cannot tell the model's input shapes")
    check_inputs(inputs, spec)
    source = Source(spec, framework, model, inputs, example or None)
    # Declared shapes win; sample within the example's ranges.
    example_shapes = {n: tuple(np.shape(a)) for n, a in (source.example or {}).items()}
    if declared and example_shapes and any(tuple(s.shape) != example_shapes[s.name] for s in inputs):
        source.example = None
    return source


def _is_windows_drive(spec: str) -> bool:
    return len(spec) > 2 and spec[1] == ":" and spec[2] in "\\/"


def _from_factory(spec: str, declared) -> Source:
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            file = Path(target)
            if not file.exists():
                raise BadInputError(f"factory file not found: {target}")
            module_name = f"_ondevice_factory_{abs(hash(str(file.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(module_name, file)
            if module_spec is None or module_spec.loader is None:
                raise BadInputError(f"factory file {target} cannot be imported as Python")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except BadInputError:
        raise
    except SystemExit as exc:
        raise BadInputError(
            f"importing {target} called sys.exit({exc.code!r}); a factory module must define the factory, not exit"
        ) from exc
    except Exception as exc:
        raise input_error(f"cannot import {target}: {type(exc).__name__}: {exc}", exc) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise BadInputError(f"{target} has no callable {attr!r}")
    try:
        made = factory()
    except SystemExit as exc:
        raise BadInputError(f"factory {spec} called sys.exit({exc.code!r}) instead of returning a model") from exc
    except Exception as exc:
        raise input_error(f"factory {spec} raised {type(exc).__name__}: {exc}", exc) from exc
    model, example = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    return from_object(model, example, declared, spec)


def _normalise_example(example: Any, names: list[str]) -> dict[str, np.ndarray]:
    """Example inputs as {name: ndarray}, from a tensor, a tuple/list or a dict."""
    if example is None:
        return {}
    if isinstance(example, dict):
        return {str(k): _to_numpy(v) for k, v in example.items()}
    items = list(example) if isinstance(example, (tuple, list)) else [example]
    if len(items) > len(names):
        names = names + [f"input_{i}" for i in range(len(names), len(items))]
    return {names[i]: _to_numpy(v) for i, v in enumerate(items)}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def _torch_input_names(model) -> list[str]:
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _keras_input_names(model) -> list[str]:
    return [_clean_keras_name(t.name) for t in getattr(model, "inputs", None) or []]


def _clean_keras_name(name: str) -> str:
    return name.split(":")[0]


def _keras_specs(model) -> list[TensorSpec]:
    specs = []
    for tensor in getattr(model, "inputs", None) or []:
        shape = tuple(1 if (i == 0 and d is None) else d for i, d in enumerate(tensor.shape))
        dtype = str(getattr(tensor, "dtype", "float32"))
        dtype = dtype.replace("<dtype: '", "").replace("'>", "")
        specs.append(TensorSpec(_clean_keras_name(tensor.name), shape, dtype))
    return specs


def _from_onnx_file(path: Path, declared, spec: str) -> Source:
    onnx = _lazy.require("onnx")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise input_error(f"malformed or truncated ONNX file {spec}: {one_line(exc)}", exc) from exc
    initializers = {i.name for i in model.graph.initializer}
    inferred = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        ttype = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
        if any(d is not None and d <= 0 for d in dims):
            raise BadInputError(
                f"ONNX file {spec}: input {value.name!r} declares shape {list(dims)}; a dimension "
                "must be a positive integer (or symbolic); fix the model or give --input"
            )
        inferred.append(TensorSpec(value.name, dims, dtype))
    inputs = merge_specs(declared, inferred)
    undefined = [s.name for s in inputs if any(d is None for d in s.shape)]
    if undefined and not declared:
        # Dynamic axes are fixed to 1 for sampling; --input sets them explicitly.
        inputs = [TensorSpec(s.name, tuple(1 if d is None else d for d in s.shape), s.dtype) for s in inputs]
    return Source(spec, "onnx", path, inputs, None, path)


def _from_keras_file(path: Path, declared, spec: str) -> Source:
    keras = _lazy.require("keras")
    try:
        model = keras.models.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:
        raise input_error(f"malformed or truncated Keras file {spec}: {one_line(exc)}", exc) from exc
    inputs = merge_specs(declared, _keras_specs(model))
    return Source(spec, "keras", model, inputs, None, path)


def _from_saved_model(path: Path, declared, spec: str, trust_graph: bool = False) -> Source:
    """A SavedModel's serving signature wrapped as a Keras model, so the Keras routes apply.

    Loading a SavedModel runs its TensorFlow graph, not Python code from the file; a graph with
    file-system, network or Python ops is refused unless ``trust_graph``.
    """
    keras = _lazy.require("keras")
    tf = _lazy.require("tensorflow")
    if not trust_graph:
        check_saved_model(path, spec)
    try:
        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        layer = keras.layers.TFSMLayer(str(path.resolve()), call_endpoint="serving_default")
    except Exception as exc:
        raise input_error(
            f"malformed SavedModel {spec} (a serving_default signature is needed): {one_line(exc)}", exc
        ) from exc
    declared_by_name = {d.name: d for d in declared}
    inputs = []
    for name, tspec in signature.structured_input_signature[1].items():
        shape = tuple(1 if d is None else d for d in tspec.shape)
        shape = declared_by_name[name].shape if name in declared_by_name else shape
        inputs.append(keras.Input(shape=shape[1:], batch_size=shape[0], name=name, dtype=tspec.dtype.name))
    model = keras.Model(inputs, layer(inputs if len(inputs) > 1 else inputs[0]))
    source = from_object(model, None, declared, spec)
    source.path = path
    return source


def _from_pt2(path: Path, declared, spec: str, trust_pickle: bool = False) -> Source:
    """A torch.export archive; read once, its members checked for pickles before torch loads them."""
    torch = _lazy.require("torch")
    data = path.read_bytes()
    if not trust_pickle:
        check_sample_inputs(torch, check_pt2(data, spec), spec)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:
        raise input_error(f"malformed or truncated .pt2 file {spec}: {one_line(exc)}", exc) from exc
    args = program.example_inputs[0] if program.example_inputs else None
    model = program.module()
    if args is None and not declared:
        raise BadInputError(f"{spec} carries no example inputs: give --input NAME:SHAPE")
    source = from_object(model, args, declared, spec)
    source.path = path
    return source


def _from_torch_file(path: Path, declared, spec: str, trust_pickle: bool = False) -> Source:
    torch = _lazy.require("torch")
    if not zipfile.is_zipfile(path):
        raise BadInputError(f"malformed or truncated PyTorch file {spec}: not a TorchScript archive")
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    is_script = any("/code/" in n or n.endswith("constants.pkl") for n in names)
    try:
        if is_script:
            model = torch.jit.load(str(path), map_location="cpu")
        elif trust_pickle:
            model = torch.load(str(path), map_location="cpu", weights_only=False)
        else:
            raise BadInputError(
                f"{spec} is a pickled torch.save model; loading it runs arbitrary code. "
                "Re-run with --trust-pickle if you trust its author, or export it with "
                "torch.export / TorchScript"
            )
    except BadInputError:
        raise
    except Exception as exc:
        raise input_error(f"malformed or truncated PyTorch file {spec}: {one_line(exc)}", exc) from exc
    if not declared:
        raise BadInputError(f"{spec} carries no input shapes: give --input NAME:SHAPE[:DTYPE]")
    source = from_object(model, None, declared, spec)
    source.path = path
    return source
