"""The conversion cache: an export's artifacts and manifest, found again by what made them.

The key is a hash of the source's bytes (model file, or a factory's code file and the weights and
structure of the model it returned), its input specs and example, the export options (targets,
precisions, strategy, dynamic axes, calibration data, ...), the versions of every converter package
and ondevice's own converter code. An unchanged model's re-run copies the entry into its output folder
(the manifest's hashes are checked on load) and skips conversion; a changed weight, option or version
is another key. Entries are written to a temporary folder and renamed into place, so a killed run
never leaves half an entry, and two runs storing the same key keep one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..core import lazy as _lazy

CACHE_VERSION = 1
CACHE_NOTE = "artifact from the conversion cache"  # how a report's targets say where their artifact came from
ENTRY = "entry.json"
# Whose versions change what an export produces (the runtimes too: strategies probe with them).
_PACKAGES = (
    "numpy",
    "torch",
    "tensorflow",
    "keras",
    "tf-keras",
    "onnx",
    "onnxruntime",
    "onnxscript",
    "onnxsim",
    "openvino",
    "nncf",
    "onnx2tf",
    "tf2onnx",
    "litert-torch",
    "ai-edge-litert",
    "ai-edge-quantizer",
    "executorch",
    "ondevice",
)
_EXPORT_OPTIONS = ("to", "quantize", "strategy", "dynamic", "int8_io", "int8_kernels", "require")


def key_for(source, options: dict) -> tuple[str, dict]:
    """(hex key, what went into it) for exporting ``source`` with the check ``options``."""
    parts = {
        "cache_version": CACHE_VERSION,
        "source": source_digest(source),
        "inputs": [s.to_json() for s in source.inputs],
        "export": {k: options.get(k) for k in _EXPORT_OPTIONS},
        "calibration": _file_digest(options.get("calibration")),
        "packages": _lazy.package_versions(*_PACKAGES),
        "ondevice_code": _code_digest(),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), parts


def source_digest(source) -> str:
    """Hash of what the source is: its file's bytes, or its factory's code and its model's weights."""
    digest = hashlib.sha256()
    if source.path is not None:
        _update_path(digest, Path(source.path))
    code = _factory_file(source.spec) if source.path is None else None
    if code is not None:
        _update_path(digest, code)
    if source.model is not None and source.path is None:
        _update_model(digest, source)
    for name, value in sorted((source.example or {}).items()):
        digest.update(f"example {name} {value.dtype} {value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _factory_file(spec: str) -> Path | None:
    target, colon, _ = spec.rpartition(":")
    if not colon:
        return None
    if target.endswith(".py"):
        return Path(target)
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found and found.origin and os.path.isfile(found.origin) else None


def _update_path(digest, path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)


def _update_model(digest, source) -> None:
    """The model's structure and every weight and buffer, by name."""
    model = source.model
    digest.update(repr(model).encode())
    if source.framework == "torch":
        import torch

        for name, tensor in sorted(model.state_dict().items()):
            value = tensor.detach().cpu().contiguous().view(-1)
            digest.update(f"{name} {value.dtype} {tuple(tensor.shape)}".encode())
            # As raw bytes: numpy has no bfloat16.
            digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    elif source.framework == "keras":
        digest.update(model.to_json().encode())
        for variable in model.weights:
            value = variable.numpy()
            digest.update(f"{variable.path} {value.dtype} {value.shape}".encode())
            digest.update(value.tobytes())


def _file_digest(path) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    _update_path(digest, Path(path))
    return digest.hexdigest()


_code = None


def _code_digest() -> str:
    """ondevice's converters and export code: a fix there must not be hidden by an old artifact."""
    global _code
    if _code is None:
        root = Path(__file__).resolve().parent.parent.parent
        digest = hashlib.sha256()
        for folder in ("converters", "ondevice"):
            for file in sorted((root / folder).glob("*.py")):
                digest.update(file.name.encode())
                digest.update(file.read_bytes())
        _code = digest.hexdigest()
    return _code


_VALIDATION_OPTIONS = (
    "samples",
    "seed",
    "atol",
    "rtol",
    "runs",
    "allow_inconclusive",
    "allow_precision_change",
    "no_emulate_cpu",
    "no_explain",
)


def validation_key(options: dict, threads: int) -> str:
    """What a validation's numbers depend on beyond the artifacts: its options, golden inputs and threads."""
    parts = {
        **{k: options.get(k) for k in _VALIDATION_OPTIONS},
        "threads": threads,
        "inputs": _file_digest(options.get("inputs")),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def keep_report(cache_dir, key: str, validation: str, report) -> None:
    """Keep the report of a validation of this entry's artifacts (written atomically) for --trust-cache."""
    from .._paths import write_text_atomic

    folder = entry_folder(cache_dir, key) / "reports"
    if not (folder.parent / ENTRY).exists():
        return
    folder.mkdir(exist_ok=True)
    data = report.to_json()
    for target in data["targets"]:
        if target.get("artifact"):
            target["artifact"] = Path(target["artifact"]).name  # restored beside the report, by name
        target["notes"] = [n for n in target.get("notes") or [] if not n.startswith(CACHE_NOTE)]
    write_text_atomic(folder / f"{validation}.json", json.dumps(data, indent=2))


def kept_report(cache_dir, key: str, validation: str, out: Path):
    """The kept report of this entry for these validation settings, its artifacts in ``out``; or None."""
    from ..core.errors import BadInputError
    from ..report import load_report

    path = entry_folder(cache_dir, key) / "reports" / f"{validation}.json"
    if not path.is_file():
        return None
    try:
        report = load_report(path)
    except BadInputError:
        return None
    for target in report.targets:
        if target.artifact:
            target.artifact = str(Path(out) / Path(target.artifact).name)
    return report


def entry_folder(cache_dir, key: str) -> Path:
    return Path(cache_dir) / key[:2] / key


def restore(cache_dir, key: str, out_dir: Path) -> dict | None:
    """Copy a cached export into ``out_dir``; its entry record, or None when there is none."""
    folder = entry_folder(cache_dir, key)
    try:
        record = json.loads((folder / ENTRY).read_text())
    except (OSError, ValueError):
        return None
    for name in record["files"]:
        shutil.copyfile(folder / name, out_dir / name)
    shutil.copyfile(folder / "manifest.json", out_dir / "manifest.json")
    return record


def store(cache_dir, key: str, parts: dict, artifacts) -> Path | None:
    """Keep a complete export (every requested artifact made) under ``key``; None when not stored."""
    if artifacts.failures or not artifacts.items:
        return None  # a failure may be transient (a timeout): converting again is the honest retry
    folder = entry_folder(cache_dir, key)
    if (folder / ENTRY).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=folder.parent))
    try:
        names = [a.path.name for a in artifacts.items] + [f.name for a in artifacts.items for f in a.files]
        for name in names:
            shutil.copyfile(Path(artifacts.out_dir) / name, staging / name)
        shutil.copyfile(Path(artifacts.out_dir) / "manifest.json", staging / "manifest.json")
        record = {"key": key, "files": names, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "made_of": parts}
        (staging / ENTRY).write_text(json.dumps(record, indent=2, default=str))
        os.rename(staging, folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / ENTRY).exists():
            raise
    return folder
