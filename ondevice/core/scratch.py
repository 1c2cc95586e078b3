"""One scratch folder per run: every third-party tool works, keeps its temporaries and its home there.

Converters and runtimes write as they please: onnxruntime's quantization tools drop
``sym_shape_infer_temp.onnx`` and ``<uuid>.data`` into the working directory, TensorFlow leaves
SavedModels and autograph files in the temp folder, Keras creates ``~/.keras/keras.json``. While a
run is active (``run_scratch``), its scratch folder ``OUT/.work`` (or a temporary folder when ``OUT``
cannot be written) is this process's temp folder, every subprocess gets a folder of its own in it
as working directory, temp folder and home, and the whole of it is removed when the run ends unless
kept (``--keep-work``). A killed run's scratch folder, and the artifacts it had installed, go at the
start of the next run in the same ``OUT``.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InternalError

WORK = ".work"
# Files ondevice put in OUT that no manifest lists, in OUT/.work so a killed run's survive it:
# "previous", a previous run's artifacts once its manifest is gone (removed by the next export, which
# knows its source and never removes that), and "installed", this run's until its manifest is written.
_UNLISTED = "unlisted.json"
_TEMP_VARS = ("TMPDIR", "TEMP", "TMP")


@dataclass
class Scratch:
    """The active run's scratch folder."""

    root: Path
    out_dir: Path | None
    keep: bool = False
    protected: set = field(default_factory=set)  # files never removed (the run's own source)
    thread: int = field(default_factory=threading.get_ident)

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def folder(self, name: str) -> Path:
        """A fresh, empty folder ``name`` in the scratch space (a previous one of that name is removed)."""
        path = self.root / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def protect(self, path) -> None:
        """Never remove ``path`` as a stale output (a source the user keeps in OUT)."""
        if path is not None:
            self.protected.add(os.path.realpath(path))

    def will_install(self, paths) -> None:
        """Record files about to be moved into OUT: if the run ends before its manifest, they are removed."""
        if self.out_dir is not None:
            _note(self.out_dir, installed=paths)

    def listed(self) -> None:
        """The manifest now lists every file this run installed."""
        if self.out_dir is not None:
            _write_record(self.out_dir, {**_record(self.out_dir), "installed": []})


_active: Scratch | None = None


def current() -> Scratch | None:
    """The active run's scratch space, or None outside a run."""
    return _active


def active() -> Scratch:
    """The active run's scratch space; inside ``run_scratch`` only (outside, a bug: InternalError)."""
    if _active is None:
        raise InternalError("no scratch space: export steps run inside run_scratch()")
    return _active


def keeping() -> bool:
    """True when the active run keeps its scratch folder for debugging."""
    return _active is not None and _active.keep


@contextmanager
def run_scratch(out_dir=None, keep: bool = False):
    """Make ``OUT/.work`` this run's scratch space for the block; nested blocks share the outer one.

    ``out_dir`` None (or a folder that cannot be written) puts the scratch space in the system temp
    folder. At the end, artifacts this run installed but no manifest lists (a failed export) are removed.
    """
    global _active
    if _active is not None:
        if _active.thread != threading.get_ident():
            # The temp folder, environment and (briefly) working directory it sets are the process's.
            raise InternalError("one export/check per process at a time: run concurrent ones in processes")
        yield _active
        return
    root, out = _make_root(out_dir)
    space = Scratch(root, out, keep)
    space.tmp.mkdir(parents=True, exist_ok=True)
    if keep:  # said now: the verdict line must stay the last
        print(f"note: the scratch folder is kept after the run: {root}", file=sys.stderr, flush=True)
    saved = _redirect(space)
    _active = space
    try:
        yield space
    finally:
        _active = None
        _restore(saved)
        _close(space)


def _close(space: Scratch) -> None:
    previous = []
    if space.out_dir is not None:
        record = _record(space.out_dir)
        _remove(space.out_dir, record["installed"], space.protected)
        previous = record["previous"]
    if not space.keep:
        shutil.rmtree(space.root, ignore_errors=True)
    if previous and space.out_dir is not None:
        # This run failed before its export removed them: the next export will.
        _write_record(space.out_dir, {"previous": previous, "installed": []})


def _make_root(out_dir) -> tuple[Path, Path | None]:
    """A fresh OUT/.work (a killed run's is replaced; its record of unlisted files carries over)."""
    if out_dir is not None:
        out = Path(out_dir).absolute()
        root = out / WORK
        try:
            planted = root.is_symlink() or root.is_file()
            record = {"previous": [], "installed": []} if planted else _record(out)
            if planted:
                root.unlink()
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            if record["previous"] or record["installed"]:
                _write_record(out, record)
            return root, out
        except OSError:
            pass  # a read-only folder (validate of artifacts kept elsewhere): work in the temp folder
    return Path(tempfile.mkdtemp(prefix="ondevice-work-")), None


def retire_manifest(out_dir) -> None:
    """Before OUT/manifest.json is removed: its artifacts are recorded for the next export to remove."""
    out = Path(out_dir).absolute()
    names = _manifest_artifacts(out / "manifest.json")
    if names:
        _note(out, previous=[out / name for name in names])


def remove_previous_artifacts(out_dir, keep=()) -> list[Path]:
    """Remove the previous run's artifacts (those its manifest lists, and a killed run's), and its manifest.

    Only files ondevice wrote and named: plain file names directly in OUT. Files no manifest named
    are the user's and stay; a manifest that describes files kept elsewhere (paths outside OUT)
    removes nothing; ``keep`` (the run's source) is never removed. Links are removed, never followed.
    """
    out = Path(out_dir).absolute()
    retire_manifest(out)
    manifest = out / "manifest.json"
    if manifest.is_symlink() or manifest.is_file():
        manifest.unlink()
    record = _record(out)
    removed = _remove(out, record["previous"] + record["installed"], keep)
    _write_record(out, {"previous": [], "installed": []})
    return removed


def _remove(out: Path, names, keep=()) -> list[Path]:
    kept = {os.path.realpath(p) for p in keep}
    removed = []
    for name in names:
        path = Path(name)
        if path.parent == out and os.path.realpath(path) not in kept and (path.is_symlink() or path.is_file()):
            path.unlink()
            removed.append(path)
    return removed


def _manifest_artifacts(manifest: Path) -> list[str]:
    """The plain file names an ondevice manifest lists as its artifacts and their side files."""
    try:
        data = json.loads(manifest.read_text())
        entries = data["artifacts"] if isinstance(data, dict) and not data.get("external") else []
        names = [e["path"] for e in entries] + [f["path"] for e in entries for f in e.get("files") or []]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and Path(n).name == n]


def _note(out: Path, previous=(), installed=()) -> None:
    record = _record(out)
    record["previous"] += [os.path.abspath(p) for p in previous]
    record["installed"] += [os.path.abspath(p) for p in installed]
    _write_record(out, record)


def _record(out: Path) -> dict:
    """OUT/.work/unlisted.json as {"previous": [...], "installed": [...]} (empty lists when absent)."""
    try:
        data = json.loads((Path(out) / WORK / _UNLISTED).read_text())
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    return {
        key: [n for n in data.get(key) or [] if isinstance(n, str)] if isinstance(data.get(key), list) else []
        for key in ("previous", "installed")
    }


def _write_record(out: Path, record: dict) -> None:
    path = Path(out) / WORK / _UNLISTED
    if not record["previous"] and not record["installed"]:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: list(dict.fromkeys(names)) for key, names in record.items()}))


def _redirect(space: Scratch) -> dict:
    """Point this process's temp folder (Python's and native code's) into the scratch space."""
    saved = {
        "tempdir": tempfile.tempdir,
        "bytecode": sys.dont_write_bytecode,
        "env": {k: os.environ.get(k) for k in (*_TEMP_VARS, "KERAS_HOME")},
    }
    tempfile.tempdir = str(space.tmp)
    for key in _TEMP_VARS:
        os.environ[key] = str(space.tmp)
    # A factory file imported now would leave __pycache__ beside it, in the user's tree.
    sys.dont_write_bytecode = True
    if "keras" not in sys.modules and _user_keras_home() is None:
        # Keras writes a default keras.json on import when the user has none; let it write it here.
        os.environ["KERAS_HOME"] = str(space.root / "keras")
    return saved


def _restore(saved: dict) -> None:
    tempfile.tempdir = saved["tempdir"]
    sys.dont_write_bytecode = saved["bytecode"]
    for key, value in saved["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _user_keras_home() -> str | None:
    """The user's Keras folder when it holds a keras.json (then Keras reads it and writes nothing)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return home if os.path.isfile(os.path.join(home, "keras.json")) else None


@contextmanager
def child_folder(prefix: str = "ondevice-iso-"):
    """A fresh folder for one subprocess, in the run's scratch space during a run; removed after the
    block unless the run keeps its scratch space."""
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        yield folder
    finally:
        if not keeping():
            shutil.rmtree(folder, ignore_errors=True)


def child_env(folder) -> dict:
    """Environment for a subprocess whose working folder is ``folder``: home, caches and temp inside it.

    The user's site-packages and Keras configuration stay visible (read, never written).
    """
    folder = Path(folder)
    home, tmp = folder / "home", folder / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "PYTHONUSERBASE": site.getuserbase(),
        "PYTHONDONTWRITEBYTECODE": "1",
        **{key: str(tmp) for key in _TEMP_VARS},
    }
    keras_home = _user_keras_home()
    if keras_home:
        env["KERAS_HOME"] = keras_home
    elif "KERAS_HOME" in os.environ:
        env["KERAS_HOME"] = str(home / ".keras")
    return env


@contextmanager
def working_directory(path):
    """Run a block with ``path`` as the working directory, for in-process tools that write to it.

    The working directory is the process's: keep the block short and pass the tool absolute paths.
    """
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(previous)


def file_mode() -> int:
    """The mode a plain ``open(..., "w")`` gives a new file here (0o666 less the umask)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, then put it back at once
    os.umask(mask)
    return 0o666 & ~mask
