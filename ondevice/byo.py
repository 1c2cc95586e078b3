"""Artifacts made by any tool: ``.onnx``, ``.tflite``, ``.xml`` + ``.bin`` and ``.pte`` files, or a folder of them.

Conversion scripts already produce these with their own converters. ondevice describes each file
the way its own export would -- target from the suffix, precision read from the file, inputs and
outputs matched to the source's (``layout.match_external``) -- and writes that description as its
own manifest beside the report, never into the folder the files came from. From there on the files
are judged exactly like an export: parity, latency, the precision check, the inconclusive guard.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from .artifacts import MANIFEST, Artifact, Artifacts, runtime_for
from .core.errors import BadInputError, input_error, one_line
from .core.quiet import quiet
from .core.vocab import ARTIFACT_SUFFIX
from .layout import IOHint, match_external, moves_layout, parse_io_map
from .runtimes import get_runner_class

SUFFIX_TARGETS = {suffix: target for target, suffix in ARTIFACT_SUFFIX.items()}
_SUFFIXES = ", ".join(ARTIFACT_SUFFIX.values())
EXTERNAL_STRATEGY = "external"  # the report's strategy for a file ondevice did not make


def is_export_folder(paths) -> bool:
    """True for one folder holding an ondevice manifest (an export), False for files made elsewhere."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    return len(paths) == 1 and paths[0].is_dir() and (paths[0] / MANIFEST).exists()


def collect(paths) -> list[Path]:
    """The artifact files named by ``paths``: files as given, folders by their .onnx/.tflite/.xml/.pte files."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    found = []
    for path in paths:
        if not path.exists():
            raise BadInputError(f"artifact not found: {path}")
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIX_TARGETS and p.is_file())
            if not inside:
                raise BadInputError(f"{path} holds neither {MANIFEST} nor any artifact file ({_SUFFIXES})")
            found.extend(inside)
        elif path.suffix.lower() not in SUFFIX_TARGETS:
            raise BadInputError(
                f"{path}: not an artifact ondevice can run; expected a file ending {_SUFFIXES} "
                "(OpenVINO's .xml with its .bin beside it) or a folder of them"
            )
        else:
            found.append(path)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    for path in unique:
        if path.stat().st_size == 0:
            raise BadInputError(f"artifact {path} is empty")
        side_files(path)  # a missing .bin is the user's to fix before anything runs
    return unique


def side_files(path: Path) -> list[Path]:
    """Files the artifact reads beside itself: an IR's .bin, an ONNX model's external data."""
    target = SUFFIX_TARGETS[path.suffix.lower()]
    if target == "openvino":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise BadInputError(f"OpenVINO IR {path} has no weights file {weights.name} beside it")
        return [weights]
    if target == "onnx":
        return _onnx_external_data(path)
    return []


def _onnx_external_data(path: Path) -> list[Path]:
    from .core import lazy as _lazy

    onnx = _lazy.require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise input_error(f"artifact {path} is not a readable ONNX model: {type(exc).__name__}: {exc}", exc) from exc
    names = set()
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                names.add(entry.value)
    return [path.parent / name for name in sorted(names) if (path.parent / name).is_file()]


def parse_hints(texts) -> list[IOHint]:
    """``--io-map`` texts (or IOHint objects) as hints."""
    return [t if isinstance(t, IOHint) else parse_io_map(t) for t in texts or ()]


def describe(source, paths, out_dir, hints=(), precision: str | None = None, threads: int = 1) -> Artifacts:
    """Artifacts for files made elsewhere, I/O matched to ``source`` (whose outputs must be known).

    ``precision`` is what the files are meant to have (None: float32); the precision check fails a
    file that holds another (e.g. OpenVINO's save_model compressing weights to fp16 by default).
    ``hints`` are ``--io-map`` entries; one that names no tensor of any file is refused.
    """
    if precision not in (None, "fp16", "dynamic-int8", "int8"):
        raise BadInputError(f"unknown precision {precision!r}; choose from fp32, fp16, dynamic-int8, int8")
    hints = parse_hints(hints)
    items = [describe_one(source, path, hints, precision=precision, threads=threads) for path in collect(paths)]
    _unused_hints(hints, items)
    return Artifacts(Path(out_dir), items, [], source.to_json(), external=True)


def describe_one(source, path: Path, hints: list[IOHint], precision: str | None, threads: int) -> Artifact:
    """One file as an Artifact: runner loaded to read its I/O, pairs matched, hash sealed."""
    from ondevice.validators.precision import inspect

    path = Path(path).resolve()
    target = SUFFIX_TARGETS[path.suffix.lower()]
    try:
        with quiet():
            runner = get_runner_class(runtime_for(target))(path, threads=threads)
    except BadInputError:
        raise
    except Exception as exc:
        raise input_error(f"artifact {path} did not load in {runtime_for(target)}: {one_line(exc)}", exc) from exc
    moves = moves_layout(source.framework, target)
    try:
        inputs = match_external(source.inputs, runner.inputs, "input", layout_moves=moves, hints=hints)
        outputs = match_external(source.outputs, runner.outputs, "output", layout_moves=moves, hints=hints)
    except BadInputError as exc:
        raise type(exc)(f"{path.name}: {exc}") from exc
    artifact = Artifact(
        target=target,
        path=path,
        strategy=EXTERNAL_STRATEGY,
        inputs=inputs,
        outputs=outputs,
        input_dtypes={s.name: s.dtype for s in runner.inputs},
        files=side_files(path),
        quantize=precision,
        versions=_producer(path, target),
        options={"external": True, "quantize": precision, "dynamic_kept": _dynamic_kept(inputs, runner.inputs)},
    )
    try:
        artifact.precision = {**inspect(path, target).to_json(), "requested": precision or "fp32"}
    except Exception as exc:  # the runtime loaded it; the pipeline's precision check will say more
        artifact.notes.append(f"precision not inspected: {one_line(exc)}")
    artifact.seal()
    return artifact


def _dynamic_kept(inputs, specs) -> dict:
    """Source input axes the file leaves dynamic (None in its shape), mapped back through the layout."""
    by_name = {s.name: s for s in specs}
    kept = {}
    for io in inputs:
        shape = by_name[io.artifact].shape
        axes = sorted((io.perm[i] if io.perm else i) for i, d in enumerate(shape) if d is None)
        if axes:
            kept[io.source] = axes
    return kept


def _unused_hints(hints: list[IOHint], items: list[Artifact]) -> None:
    used = {(m.source, m.artifact) for a in items for m in [*a.inputs, *a.outputs] if m.matched_by == "io-map"}
    unused = [h for h in hints if (h.source, h.artifact) not in used]
    if unused:
        names = {a.path.name: sorted({m.artifact for m in [*a.inputs, *a.outputs]}) for a in items}
        raise BadInputError(
            f"--io-map {unused[0].source}={unused[0].artifact} names no source tensor and artifact "
            f"tensor pair; the artifact tensors are {names}"
        )


def _producer(path: Path, target: str) -> dict:
    """What the file says made it (ONNX producer, IR runtime version, TFLite description), if anything."""
    try:
        if target == "onnx":
            import onnx

            model = onnx.load(str(path), load_external_data=False)
            return {"producer": f"{model.producer_name} {model.producer_version}".strip()}
        if target == "openvino":
            root = ElementTree.parse(str(path)).getroot()
            version = root.find("rt_info/Runtime_version")
            return {"producer": f"openvino {version.get('value')}"} if version is not None else {}
        if target == "executorch":
            return {}  # a .pte names no producer
        from ai_edge_litert.tools import flatbuffer_utils

        description = flatbuffer_utils.read_model(str(path)).description
        return {"producer": description.decode(errors="replace")} if description else {}
    except Exception:
        return {}  # provenance is a courtesy; the file itself is what gets judged


def write_manifest(artifacts: Artifacts, folder) -> Path:
    """ondevice's manifest for files made elsewhere, in ``folder`` (the report's), never beside the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    artifacts.out_dir = folder
    return artifacts.write_manifest()


def prepare(source, paths, folder, hints=(), precision: str | None = None, threads: int = 1) -> Artifacts:
    """Describe files made elsewhere against ``source`` and write ondevice's manifest for them in
    ``folder`` (where the report goes); returns Artifacts ready for ``validate_artifacts``."""
    from . import progress
    from .reference import fill_source_outputs

    if not source.outputs:
        progress.stage("source", "running the example inputs")
        fill_source_outputs(source, threads)
    progress.stage("artifacts", "reading inputs, outputs and precision")
    artifacts = describe(source, paths, folder, hints=hints, precision=precision, threads=threads)
    write_manifest(artifacts, folder)
    return artifacts
