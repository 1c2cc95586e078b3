"""``ondevice explain``: run the source and one artifact on the same input with every intermediate
tensor visible, and locate the first layer where they part (validators.divergence).

Used on its own (``ondevice explain SOURCE ARTIFACT``) and by validation for each target that fails
parity, within a time budget.
"""

from __future__ import annotations

import time
from pathlib import Path

from .artifacts import ArtifactRunner, Artifacts
from .core.errors import BadInputError, one_line
from .core.quiet import quiet
from .runtimes import capture

DEFAULT_BUDGET_S = 300.0


def explain_artifact(source, artifact, sample: dict, threads: int = 1, limit_bytes: int = capture.LIMIT_BYTES):
    """The Divergence of ``artifact`` from ``source`` on one sample (source names, source layout)."""
    from ondevice.validators.divergence import locate

    with quiet():
        src = source_tensors(source, sample, limit_bytes)
        art = artifact_tensors(artifact, sample, threads, limit_bytes)
    return locate(list(src), list(art), artifact.quantize)


def source_tensors(source, sample: dict, limit_bytes: int = capture.LIMIT_BYTES):
    """The source's per-layer outputs, named by module path (PyTorch), layer name (Keras) or node output (ONNX)."""
    names = [s.name for s in source.inputs]
    if source.framework == "torch":
        return capture.torch_layers(source.model, sample, names, limit_bytes)
    if source.framework == "keras":
        return capture.keras_layers(source.model, sample, names, limit_bytes)
    return capture.onnx_tensors(source.path, sample, limit_bytes=limit_bytes)


def artifact_tensors(artifact, sample: dict, threads: int = 1, limit_bytes: int = capture.LIMIT_BYTES):
    """The artifact's every intermediate tensor on ``sample`` (renamed and laid out as the artifact takes it)."""
    if artifact.target == "executorch":
        # Intermediate tensors would come from ExecuTorch's ETDump debug buffers matched through an
        # ETRecord written at export; neither is produced here yet.
        raise BadInputError(
            "explain does not read ExecuTorch programs yet (their intermediate tensors need "
            "an ETDump and an ETRecord); explain the same model's ONNX or OpenVINO export"
        )
    runner = ArtifactRunner(artifact, threads)
    feeds = runner.feeds(sample)
    if artifact.target == "onnx":
        return capture.onnx_tensors(artifact.path, feeds, threads, limit_bytes)
    ordered = [feeds[spec.name] for spec in runner.runner.inputs]
    if artifact.target == "tflite":
        return capture.tflite_tensors(artifact.path, ordered, threads, limit_bytes)
    return capture.openvino_tensors(artifact.path, ordered, threads, limit_bytes)


def pick_artifact(source, path, target=None, quantize=None, hints=(), precision=None, threads: int = 1):
    """The artifact ``explain`` looks at: one of an export folder (by --target/--quantize) or a single file."""
    from .byo import describe_one, is_export_folder, parse_hints
    from .reference import fill_source_outputs

    if not source.outputs:
        fill_source_outputs(source, threads)
    if is_export_folder(path):
        items = [
            a
            for a in Artifacts.load(path)
            if (target is None or a.target == target) and (quantize is None or a.quantize == quantize)
        ]
        if len(items) != 1:
            found = ", ".join(f"{a.target}[{a.quantize}]" if a.quantize else a.target for a in items) or "none"
            raise BadInputError(
                f"{path} holds {len(items)} artifacts matching --target {target} --quantize "
                f"{quantize} ({found}): pick exactly one"
            )
        return items[0]
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"artifact not found: {path} (give an export folder or one .onnx/.tflite/.xml file)")
    return describe_one(source, path, parse_hints(hints), precision=quantize or precision, threads=threads)


def explain_within(source, artifact, sample: dict, threads: int, budget_s: float | None) -> dict:
    """The divergence as report JSON, or a note of why it is missing; never raises (the report must be written)."""
    start = time.perf_counter()
    try:
        divergence = explain_artifact(source, artifact, sample, threads)
    except Exception as exc:  # explaining is a diagnosis: its failure must not change the verdict
        return {"error": one_line(exc)}
    data = divergence.to_json()
    data["seconds"] = round(time.perf_counter() - start, 3)
    if budget_s is not None and data["seconds"] > budget_s:
        data["note"] = f"took {data['seconds']:.0f} s, over the {budget_s:.0f} s budget"
    return data


def table(divergence, limit: int = 0) -> list[str]:
    """The per-layer table as text lines (first divergence marked with >>)."""
    first = divergence.first
    lines = [
        f"   {'#':>3} {'source layer':32} {'artifact tensor':40} {'op':16} {'by':5} {'max abs err':>11} "
        f"{'rel err':>9} {'cosine':>9} {'SNR dB':>7}"
    ]
    rows = divergence.layers if not limit else divergence.layers[:limit]
    for layer in rows:
        mark = ">> " if layer is first else ("!  " if layer.diverged else "   ")
        lines.append(
            f"{mark}{layer.depth:>3} {_cut(layer.source_layer, 32):32} {_cut(layer.artifact_tensor, 40):40} "
            f"{_cut(layer.op_type, 16):16} {layer.paired_by:5} {layer.max_abs_err:11.3g} "
            f"{layer.rel_err:9.2g} {layer.cosine:9.6f} {min(layer.snr_db, 999):7.1f}"
        )
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
