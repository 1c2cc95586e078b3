"""onnx2tf 1.28.8 run the way every route into TFLite through ONNX needs it (docs/routes.md has the measurements).

* One fresh process per conversion: repeated ``onnx2tf.convert()`` calls in one process fail, and
  ``import onnx2tf`` sets ``TF_USE_LEGACY_KERAS=1`` for its process.
* Offline: onnx2tf downloads calibration images when every input is image-like, and
  ``copy_onnx_input_output_names_to_tflite`` needs ``flatc`` and curl; we write the images
  ourselves and restore names with TensorFlow's flatbuffer tools instead.
* On a copy: onnxsim rewrites its input in place; the copy also gets the ``_onnx2tf_repair``
  rewrites and plain I/O names (onnx2tf mangles "x:0" and dropped an output named "out:0").
* The .tflite's layout moves per tensor (4-D NHWC, some 3-D transposed); each tensor's ONNX and
  TFLite shapes go in the notes, and outputs (``Identity``, ``Identity_1``...) are named in ONNX order.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from ondevice.core import lazy as _lazy
from ondevice.core.isolate import IsolatedFailure, call_isolated

from . import _onnx_graph as og
from ._onnx2tf_repair import repair_for_onnx2tf
from .registry import Converted, StrategyFailed

CALIBRATION_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
_TIMEOUT_S = 900


def onnx2tf_convert(
    onnx_path: Path, workdir: Path, *, simplify: bool = False, input_shapes: dict | None = None, **options
) -> Converted:
    """Convert an ONNX file with onnx2tf in a subprocess to ``workdir/model.tflite`` (float32, NHWC I/O).

    ``simplify`` runs onnxsim first (off by default: two to three times slower, docs/routes.md); ``input_shapes``
    ({input name: shape}) fixes symbolic input axes; ``options`` go to ``onnx2tf.convert``
    unchanged, except one that would reach the network. The copy it converts gets the graph
    repairs of ``_onnx2tf_repair`` (each is listed in the notes).
    """
    if options.get("copy_onnx_input_output_names_to_tflite"):
        raise StrategyFailed(
            "copy_onnx_input_output_names_to_tflite downloads a schema with curl; "
            "output names are restored offline instead"
        )
    workdir = Path(workdir)
    work = workdir / "onnx2tf"
    work.mkdir(parents=True, exist_ok=True)
    _write_calibration(work)
    model_copy = work / "source.onnx"  # onnxsim rewrites its input in place: never the user's file
    og.copy_onnx(Path(onnx_path), model_copy)
    repairs = repair_for_onnx2tf(model_copy)
    shapes = _onnx_shapes(model_copy)
    renamed = _rename_io(model_copy)
    options = {
        key: [renamed.get(n, n) for n in value] if key.endswith("_input_names") and value else value
        for key, value in options.items()
    }
    if "Erf" in _op_types(model_copy).values():
        # TFLite has no Erf builtin: onnx2tf's tf.math.erf becomes FlexErf, which the LiteRT
        # interpreter refuses (TorchScript-exported exact GELU). Its pseudo-Erf uses builtins
        # (|error| <= 1.5e-7); a GELU pattern it recognises still becomes the GELU builtin.
        options["replace_to_pseudo_operators"] = [*options.get("replace_to_pseudo_operators", []), "erf"]
        repairs.append("Erf computed from builtin ops (onnx2tf replace_to_pseudo_operators=erf)")
    if input_shapes:
        options["overwrite_input_shape"] = [
            f"{renamed.get(n, n)}:{','.join(map(str, shape))}" for n, shape in input_shapes.items()
        ]
    kwargs = {
        "onnx_path": str(model_copy),
        "output_folder": str(work / "out"),
        "output_names": shapes[1],
        "restore": {new: old for old, new in renamed.items()},
        "options": {"not_use_onnxsim": not simplify, "non_verbose": True, **options},
    }
    try:
        result = call_isolated(
            "ondevice.converters._onnx2tf:worker",
            kwargs,
            timeout=_TIMEOUT_S,
            cwd=str(work),
            env=_child_env(simplify),
        )
    except IsolatedFailure as exc:
        # onnx2tf names the op it failed on only in its printed log, so its output text is the signal here.
        cause = telling_line(exc.output, exc.reason, _op_types(model_copy))
        # The log stays in the attempt's workdir for whoever runs the strategy directly; the
        # exporter removes workdirs, so the reason itself must name the cause.
        (workdir / "onnx2tf.log").write_text(exc.output)
        shutil.rmtree(work, ignore_errors=True)
        raise StrategyFailed(f"onnx2tf failed: {cause}") from exc
    artifact = workdir / "model.tflite"
    shutil.move(result["tflite"], artifact)
    shutil.rmtree(work, ignore_errors=True)  # SavedModel, fp16 .tflite, calibration data: not artifacts
    notes = _layout_notes(shapes, result["inputs"], result["outputs"]) + [f"graph repair: {r}" for r in repairs]
    return Converted(path=artifact, channels_last=True, versions=_versions(simplify), notes=notes)


def _write_calibration(work: Path) -> None:
    # Our own data under the name onnx2tf looks for, so it never downloads its sample images.
    images = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(work / CALIBRATION_NAME, images)


def _child_env(simplify: bool) -> dict:
    """PATH for the child: with simplification, the running interpreter's scripts folder first.

    onnx2tf runs the ``onnxsim`` found through PATH and silently skips it when there is none; the
    venv's ``bin`` is not on PATH when Python starts as ``.venv/bin/python``.
    """
    if not simplify:
        return {}  # not_use_onnxsim=True already; PATH is irrelevant
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which("onnxsim", path=path) is None:
        # onnx2tf would skip the step without a word, making this strategy a copy of the other.
        raise StrategyFailed("onnxsim executable not found next to the Python interpreter nor on PATH")
    return {"PATH": path}


def _onnx_shapes(onnx_path: Path) -> tuple[dict, list, dict]:
    """ONNX input shapes by name, output names in order, output shapes by name (None: dynamic)."""
    onnx = _lazy.require("onnx")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inputs = set(og.io_names(graph)[0])
    shapes = {v.name: og.dims(v) for v in graph.input if v.name in inputs}
    return shapes, [v.name for v in graph.output], {v.name: og.dims(v) for v in graph.output}


# onnx2tf mangles I/O names outside this pattern: "x:0" becomes "x__0" and an output named
# "out:0" was dropped from the model without a word. Such names are renamed for the conversion
# and restored in the .tflite afterwards.
_PLAIN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _rename_io(onnx_path: Path) -> dict:
    """Give the graph's inputs and outputs with unusual names plain ones, in place; old -> new."""
    onnx = _lazy.require("onnx")
    model = onnx.load(str(onnx_path), load_external_data=False)  # external data stays where it is
    inputs, outputs = og.io_names(model.graph)
    renamed = {name: f"ondevice_io_{i}" for i, name in enumerate(inputs + outputs) if not _PLAIN_NAME.match(name)}
    if renamed:
        og.rename_tensors(model.graph, renamed)  # If/Loop/Scan bodies may read outer names
        onnx.save(model, str(onnx_path))
    return renamed


def _versions(simplify: bool) -> dict:
    return _lazy.package_versions("onnx2tf", "tensorflow", "onnx", *(["onnxsim"] if simplify else []))


def _layout_notes(onnx_shapes: tuple, inputs: list, outputs: list) -> list[str]:
    """One note per tensor: its ONNX and TFLite shapes, since onnx2tf moves channels per tensor."""
    input_shapes, _, output_shapes = onnx_shapes
    notes = [f"input {name!r}: ONNX {input_shapes.get(name)} -> TFLite {shape}" for name, shape in inputs]
    return notes + [f"output {name!r}: ONNX {output_shapes.get(name)} -> TFLite {shape}" for name, shape in outputs]


# onnx2tf reports a failed op as "ERROR: onnx_op_name: /rnn/Expand" below a Python traceback.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")
_BOILERPLATE = (
    "trace log",
    "Read this and deal",
    "Alternatively,",
    "If the input OP",
    "Also, for models",
    "input_onnx_file_path:",
)


def telling_line(output: str, fallback: str = "", op_types: dict | None = None) -> str:
    """The one line of an onnx2tf log that best names why it failed: the op and the exception."""
    lines = [_ANSI.sub("", line).strip() for line in (output or "").splitlines()]
    errors = [
        line.split("ERROR:", 1)[1].strip()
        for line in lines
        if "ERROR:" in line and not any(b in line for b in _BOILERPLATE)
    ]
    op_name = next((e.split("onnx_op_name:", 1)[1].strip() for e in errors if "onnx_op_name:" in e), None)
    exceptions = [line for line in lines if _EXCEPTION.match(line)]
    others = [e for e in errors if "onnx_op_name:" not in e]
    # Without a traceback, onnx2tf's first ERROR lines say what failed; the last one is advice.
    cause = exceptions[-1] if exceptions else ("; ".join(others[:2]) if others else fallback or "(no output)")
    if op_name:
        op_type = (op_types or {}).get(op_name)
        cause = f"{op_type + ' ' if op_type else ''}node {op_name!r}: {cause}"
    return cause[:400]


def _op_types(onnx_path: Path) -> dict:
    """Node name -> op type, subgraphs included, to name the op that blocked onnx2tf (empty if unreadable)."""
    try:
        onnx = _lazy.require("onnx")
        return {n.name: n.op_type for n in og.all_nodes(onnx.load(str(onnx_path), load_external_data=False).graph)}
    except Exception:  # only decorates an error message
        return {}


def worker(onnx_path: str, output_folder: str, output_names: list, restore: dict, options: dict) -> dict:
    """Runs in the child: onnx2tf.convert, then the ONNX names onto the .tflite inputs and outputs."""
    import onnx2tf

    try:
        onnx2tf.convert(input_onnx_file_path=onnx_path, output_folder_path=output_folder, **options)
    except SystemExit as exc:  # onnx2tf reports errors by printing them and calling sys.exit(1)
        raise RuntimeError(f"onnx2tf exited with status {exc.code}") from None
    tflite = Path(output_folder) / f"{Path(onnx_path).stem}_float32.tflite"
    if not tflite.exists():
        raise RuntimeError(f"onnx2tf wrote no {tflite.name}")
    return {"tflite": str(tflite), **_restore_names(tflite, output_names, restore)}


def _restore_names(tflite: Path, output_names: list, restore: dict) -> dict:
    """Inputs back to their ONNX names; outputs (``Identity``, ``Identity_1``...) named in ONNX order."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    graph = model.subgraphs[0]
    if len(graph.outputs) != len(output_names):
        raise RuntimeError(
            f"onnx2tf produced {len(graph.outputs)} outputs for the {len(output_names)} of the ONNX graph"
        )
    for index in graph.inputs:
        name = _decode(graph.tensors[index].name)
        graph.tensors[index].name = restore.get(name, name).encode()
    for index, name in zip(graph.outputs, output_names, strict=True):
        graph.tensors[index].name = name.encode()
    flatbuffer_utils.write_model(model, str(tflite))

    def described(indices):
        return [[_decode(graph.tensors[i].name), [int(d) for d in graph.tensors[i].shape]] for i in indices]

    return {"inputs": described(graph.inputs), "outputs": described(graph.outputs)}


def _decode(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)
