"""Artifacts on disk and their manifest (written last, atomically; hashes checked on load)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._paths import member_path
from .core import lazy as _lazy
from .core.errors import BadInputError
from .layout import IOMap, to_artifact, to_source
from .runtimes import RUNTIME_MODULES, TARGET_RUNTIMES, get_runner_class

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Artifact:
    """One exported model file and what it takes to run it like its source."""

    target: str
    path: Path
    strategy: str
    inputs: list[IOMap]
    outputs: list[IOMap]
    input_dtypes: dict[str, str]
    sha256: str = ""
    size_bytes: int = 0
    files: list[Path] = field(default_factory=list)
    quantize: str | None = None
    attempts: list[dict] = field(default_factory=list)
    versions: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    probe: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    float_artifact: str | None = None  # a quantized artifact's float sibling, relative to the manifest
    calibration: dict = field(default_factory=dict)  # what an int8 artifact was calibrated on
    precision: dict = field(default_factory=dict)  # validators.precision check: requested vs found
    delegation: dict = field(default_factory=dict)  # ops each delegate took, and those left portable
    keep_float: dict = field(default_factory=dict)  # --keep-float: layers left in float, rounds tried, cost

    def seal(self) -> None:
        """Record the hash and size of the files as they are now."""
        self.sha256 = sha256_of(self.path)
        self.size_bytes = self.path.stat().st_size + sum(f.stat().st_size for f in self.files)

    def to_json(self, root: Path) -> dict:
        # Files made elsewhere stay where the user keeps them: their manifest names them absolutely.
        where = (
            (lambda p: str(Path(p).resolve())) if self.options.get("external") else (lambda p: os.path.relpath(p, root))
        )
        return {
            "target": self.target,
            "path": where(self.path),
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "files": [{"path": where(f), "sha256": sha256_of(f)} for f in self.files],
            "strategy": self.strategy,
            "quantize": self.quantize,
            "attempts": self.attempts,
            "converter_versions": self.versions,
            "options": self.options,
            "inputs": [{**m.to_json(), "dtype": self.input_dtypes.get(m.artifact)} for m in self.inputs],
            "outputs": [m.to_json() for m in self.outputs],
            "probe": self.probe,
            "notes": self.notes,
            "float_artifact": self.float_artifact,
            "calibration": self.calibration,
            "precision": self.precision,
            **({"delegation": self.delegation} if self.delegation else {}),
            **({"keep_float": self.keep_float} if self.keep_float else {}),
        }

    @classmethod
    def from_json(cls, data: dict, root: Path, external: bool = False) -> Artifact:
        """An entry of a manifest in ``root``; every path it names must lie inside ``root`` (``external``:
        the manifest ondevice wrote itself for files made elsewhere, which names them absolutely)."""
        if external:
            return cls._external(data, root)
        if data["target"] not in TARGET_RUNTIMES:
            raise BadInputError(f"unknown target {data['target']!r}; known: {', '.join(TARGET_RUNTIMES)}")
        if data.get("float_artifact") is not None:
            member_path(root, data["float_artifact"], "float_artifact")
        return cls(
            target=data["target"],
            path=member_path(root, data["path"], "artifact"),
            strategy=data["strategy"],
            inputs=[IOMap.from_json(m) for m in data["inputs"]],
            outputs=[IOMap.from_json(m) for m in data["outputs"]],
            input_dtypes={m["artifact_name"]: m.get("dtype") or "float32" for m in data["inputs"]},
            sha256=data["sha256"],
            size_bytes=data["size_bytes"],
            files=[member_path(root, f["path"], "artifact file") for f in data["files"]],
            quantize=data.get("quantize"),
            attempts=data.get("attempts", []),
            versions=data.get("converter_versions", {}),
            options=data.get("options", {}),
            probe=data.get("probe", {}),
            notes=data.get("notes", []),
            float_artifact=data.get("float_artifact"),
            calibration=data.get("calibration", {}),
            precision=data.get("precision", {}),
            delegation=data["delegation"] if isinstance(data.get("delegation"), dict) else {},
            keep_float=data["keep_float"] if isinstance(data.get("keep_float"), dict) else {},
        )

    @classmethod
    def _external(cls, data: dict, root: Path) -> Artifact:
        paths = [data["path"], *(f["path"] for f in data["files"])]
        if not all(isinstance(p, str) and os.path.isabs(p) for p in paths):
            raise BadInputError("an external artifact's paths must be absolute")
        inside = {**data, "path": ".", "files": [], "float_artifact": None}
        artifact = cls.from_json(inside, root)
        artifact.path, artifact.files = Path(data["path"]), [Path(f["path"]) for f in data["files"]]
        return artifact

    def verify(self, root: Path, recorded_files: list[dict]) -> None:
        """Refuse an artifact whose bytes differ from what the manifest recorded."""
        if not self.path.exists():
            raise BadInputError(f"artifact {self.path} listed in the manifest is missing")
        if not self.path.is_file() or _hash(self.path) != self.sha256:
            raise BadInputError(
                f"artifact {self.path} does not match the sha256 in its manifest: it changed after export"
            )
        for entry in recorded_files:
            external = self.options.get("external")
            side = Path(entry["path"]) if external else member_path(root, entry["path"], "artifact file")
            if not side.is_file() or _hash(side) != entry["sha256"]:
                raise BadInputError(f"artifact file {side} is missing or does not match its manifest")


@dataclass(frozen=True)
class ExportFailure:
    """A target (at a precision) that no strategy or quantizer could make: why, and every attempt."""

    target: str
    error: str
    quantize: str | None = None  # None: the float artifact
    status: str = "conversion_error"  # "error": a converter process crashed (a fault, exit 4)
    attempts: tuple[dict, ...] = ()  # one entry per strategy tried (strategy, status, reason, seconds)
    signal: str | None = None  # the signal that killed a crashed converter

    def to_json(self) -> dict:
        """The manifest's ``failures`` entry; a float failure keeps its short form (target, error, attempts)."""
        data: dict = {"target": self.target}
        if self.quantize is not None or self.status != "conversion_error":
            data.update(quantize=self.quantize, status=self.status)
        data.update(error=self.error, attempts=list(self.attempts))
        if self.signal is not None:
            data["signal"] = self.signal
        return data

    @classmethod
    def from_json(cls, data: dict) -> ExportFailure:
        """A manifest's ``failures`` entry (checked by ``_read_manifest``: it cannot claim a pass)."""
        attempts = data.get("attempts")
        return cls(
            data["target"],
            data["error"],
            data.get("quantize"),
            data.get("status", "conversion_error"),
            tuple(a for a in attempts if isinstance(a, dict)) if isinstance(attempts, list) else (),
            data.get("signal"),
        )


@dataclass
class Artifacts:
    """Everything one export produced: artifacts that exist, and targets that could not be made."""

    out_dir: Path
    items: list[Artifact] = field(default_factory=list)
    failures: list[ExportFailure] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    external: bool = False  # files made by other tools, described by ondevice (see byo.py)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, target: str, quantize: str | None = None) -> Artifact | None:
        """The artifact of ``target`` at ``quantize`` precision (None: the float one)."""
        return next((a for a in self.items if a.target == target and a.quantize == quantize), None)

    def float_sibling(self, artifact: Artifact) -> Artifact | None:
        """The float artifact a quantized one was made from (None for a float artifact)."""
        if not artifact.float_artifact:
            return None
        wanted = (self.out_dir / artifact.float_artifact).resolve()
        return next((a for a in self.items if a.path.resolve() == wanted), None)

    def write_manifest(self) -> Path:
        """Write OUT/manifest.json atomically (a rename), after every artifact is in place."""
        data = {
            "schema_version": MANIFEST_VERSION,
            "source": self.source,
            "artifacts": [a.to_json(self.out_dir) for a in self.items],
            "failures": [f.to_json() for f in self.failures],
        }
        if self.external:
            data["external"] = True
        from ._paths import write_text_atomic

        return write_text_atomic(self.out_dir / MANIFEST, json.dumps(data, indent=2))

    @classmethod
    def load(cls, out_dir, verify: bool = True, external_ok: bool = False) -> Artifacts:
        """Read OUT/manifest.json; with ``verify`` refuse artifacts whose hash changed.

        A manifest ondevice wrote for files made elsewhere names paths outside its folder; it is
        read only with ``external_ok`` (by the worker of the run that wrote it), never as an export.
        """
        out_dir = Path(out_dir)
        path = out_dir / MANIFEST
        if not path.exists():
            raise BadInputError(f"no {MANIFEST} in {out_dir}: run `ondevice export` first")
        data = _read_manifest(path)
        external = data.get("external") is True
        if external and not external_ok:
            raise BadInputError(
                f"{path} describes artifact files made elsewhere (it names files outside its folder) "
                "and is not read as an export: pass those files to `ondevice validate` again"
            )
        try:
            items = [Artifact.from_json(a, out_dir, external) for a in data["artifacts"]]
        except BadInputError as exc:
            raise BadInputError(f"manifest {path}: {exc}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadInputError(f"malformed manifest {path}: {type(exc).__name__}: {exc}") from exc
        if verify:
            for item, raw in zip(items, data["artifacts"], strict=True):
                item.verify(out_dir, raw.get("files", []))
        failures = [ExportFailure.from_json(f) for f in data.get("failures", [])]
        return cls(out_dir, items, failures, data.get("source", {}), external)


def _hash(path: Path) -> str | None:
    try:
        return sha256_of(path)
    except OSError:
        return None


def _read_manifest(path: Path) -> dict:
    """The manifest's JSON, refused unless it is an object of this schema version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise BadInputError(f"{path} is a folder, not a manifest file") from None
    except OSError as exc:
        raise BadInputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise BadInputError(f"malformed manifest {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"malformed manifest {path}: a JSON object is expected, not {type(data).__name__}")
    if data.get("schema_version") != MANIFEST_VERSION:
        raise BadInputError(
            f"manifest {path} has schema_version {data.get('schema_version')!r}; this ondevice "
            f"reads {MANIFEST_VERSION}: re-export it or use the ondevice that wrote it"
        )
    if not isinstance(data.get("artifacts"), list) or not all(isinstance(a, dict) for a in data["artifacts"]):
        raise BadInputError(f"malformed manifest {path}: 'artifacts' must be a list of objects")
    failures = data.get("failures", [])
    # A failure entry becomes a report row as it stands: it must not be able to claim a pass.
    if not isinstance(failures, list) or not all(
        isinstance(f, dict)
        and isinstance(f.get("target"), str)
        and isinstance(f.get("error"), str)
        and f.get("status", "conversion_error") in ("conversion_error", "error")
        for f in failures
    ):
        raise BadInputError(
            f"malformed manifest {path}: 'failures' must list targets that failed to export "
            "(status conversion_error or error, with an error message)"
        )
    return data


def runtime_for(target: str, forced: str | None = None) -> str:
    """The runtime that runs ``target``: the forced one, else the first installed default."""
    if forced:
        return forced
    choices = TARGET_RUNTIMES[target]
    for name in choices:
        if _lazy.available(RUNTIME_MODULES[name]):
            return name
    return choices[0]  # its runner raises the clear missing-package error


class ArtifactRunner:
    """Runs an artifact on source-named, source-layout inputs and returns source-named outputs."""

    def __init__(self, artifact: Artifact, threads: int = 1, runtime: str | None = None, prepared=None):
        self.artifact = artifact
        self.runtime = runtime_for(artifact.target, runtime)
        # ``prepared``: a runner already loaded on this artifact (export loads one to read its I/O).
        self.runner = prepared or get_runner_class(self.runtime)(artifact.path, threads=threads)
        self._dtypes = {spec.name: spec.dtype for spec in self.runner.inputs}

    def feeds(self, source_feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Source inputs renamed, transposed and cast for the artifact."""
        return {
            m.artifact: to_artifact(source_feeds[m.source], m, self._dtypes.get(m.artifact, "float32"))
            for m in self.artifact.inputs
        }

    def outputs(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Artifact outputs renamed and transposed back to the source's layout."""
        return {m.source: to_source(raw[m.artifact], m) for m in self.artifact.outputs}

    def run(self, source_feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.outputs(self.runner.run(self.feeds(source_feeds)))
