"""Paths read from files stay inside their folder; outputs are written without following links out of it.

A manifest names its artifacts relative to its folder and a run writes its reports into ``-o``:
anything absolute, climbing out with ``..`` or reaching out through a symbolic link is refused
(exit 2), and every output is written to a fresh temporary file that is renamed into place, so a
link planted in the output folder is replaced, never written through.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .core.errors import BadInputError

# What one run writes beside its report.json (the readable forms and the gate's verdict).
REPORT_FILES = ("report.json", "report.md", "report.html", "junit.xml", "gate.json")


def inside(path, root) -> bool:
    """True when ``path``, with every link followed, lies in ``root`` (or is ``root``)."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def member_path(root: Path, relative, what: str) -> Path:
    """``root / relative`` for a path recorded in a file that lives in ``root``; refused if it leaves ``root``."""
    if not isinstance(relative, str) or not relative.strip():
        raise BadInputError(f"{what}: expected a file name relative to {root}, got {relative!r}")
    if os.path.isabs(relative) or relative.startswith("\\") or (len(relative) > 1 and relative[1] == ":"):
        raise BadInputError(f"{what}: path {relative!r} is absolute; artifacts must lie inside {root}")
    if ".." in Path(relative.replace("\\", "/")).parts:
        raise BadInputError(f"{what}: path {relative!r} climbs out of {root} with '..'; refused")
    path = Path(root) / relative
    if not inside(path, root):
        raise BadInputError(f"{what}: {path} is a link that leads outside {root}; refused")
    return path


def output_folder(folder, option: str = "-o") -> Path:
    """Create ``folder`` if needed; an unusable one is the user's error (exit 2), found before any slow work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise BadInputError(f"{option} {folder} exists and is not a folder; give a folder path") from None
    except OSError as exc:
        raise BadInputError(
            f"cannot create {option} folder {folder}: {exc.strerror or exc}; give a writable folder"
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(f"{option} folder {folder} is not writable; give a writable folder")
    return folder


def clear_previous(folder, names) -> list[Path]:
    """Remove a previous run's files (links are removed, never followed) so a failed run leaves none behind."""
    removed = []
    if "manifest.json" in names:
        from .core.scratch import retire_manifest

        # The artifacts it lists go too, once the run knows its source (which may be one of them).
        retire_manifest(folder)
    for name in names:
        path = Path(folder) / name
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed.append(path)
        elif path.exists():
            raise BadInputError(f"{path} is a folder where this run writes a file; remove it")
    return removed


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` to a new temporary file beside ``path`` and rename it over ``path``.

    The temporary file is created exclusively (a planted link makes creation fail instead of
    being followed) and the rename replaces a link at ``path`` rather than writing through it.
    """
    from .core.scratch import file_mode

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; outputs get the mode a plain write gives
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def writable_file(path, option: str) -> Path:
    """Check that the file a user named for output can be written, before any slow work."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{option} {path} is a folder; give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise BadInputError(f"{option} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BadInputError(f"{option} {path} is not writable")
    return path


def write_user_file(path, text: str, option: str) -> Path:
    """Write a file the user named (``report -o``, ``gate --json``); failures are the user's (exit 2)."""
    path = writable_file(path, option)
    try:
        return write_text_atomic(path, text)
    except OSError as exc:
        raise BadInputError(f"cannot write {option} {path}: {exc.strerror or exc}") from exc
