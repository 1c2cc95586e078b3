"""Accelerator compatibility for export, validation, the gate and the reports (validators.compatibility).

The checks run in one worker process per call: OpenVINO's device plugins and the TFLite analyzer are
native code, and a crash there must cost only the compatibility entries, never the run.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from .core.errors import BadInputError
from .core.isolate import IsolatedFailure, call_isolated

CHECK_TIMEOUT_S = 300


# Entries of files already checked in this process, by the file's identity (see _identity): a check runs
# ahead while the process would otherwise wait (pipeline.check_source), and the validation reuses it.
_CHECKED: dict[tuple, dict] = {}


def _identity(path, target: str) -> tuple | None:
    try:
        stat = os.stat(path)
    except OSError:  # the worker says what is wrong with it
        return None
    return str(Path(path).resolve()), target, stat.st_size, stat.st_mtime_ns, stat.st_ino


def checked_before(path, target: str) -> bool:
    """Whether ``check_isolated`` would reuse entries for this file (checked in this process, unchanged since)."""
    key = _identity(path, target)
    return key is not None and key in _CHECKED


def check_isolated(items: list, timeout: float = CHECK_TIMEOUT_S) -> list[dict]:
    """``[(path, target)]`` -> one ``{backend: entry}`` per item, checked in a worker process (a file
    checked before in this process, unchanged since, is not checked again).

    A worker that fails records every backend of every item as not checked, with the reason.
    """
    from ondevice.validators.compatibility import backends_for, not_checked

    keys = [_identity(path, target) for path, target in items]
    known = {i: _CHECKED[key] for i, key in enumerate(keys) if key is not None and key in _CHECKED}
    todo = [i for i in range(len(items)) if i not in known]
    fresh: dict[int, dict] = {}
    if todo:
        request = [{"path": str(items[i][0]), "target": items[i][1]} for i in todo]
        try:
            found = call_isolated("ondevice.validators.compatibility:check_files", {"items": request}, timeout=timeout)
            fresh = {i: entry["compatibility"] for i, entry in zip(todo, found, strict=True)}
            for i, entries in fresh.items():
                key = keys[i]
                if key is not None:
                    _CHECKED[key] = copy.deepcopy(entries)
        except IsolatedFailure as failure:  # not kept: a later call tries again
            why = f"the compatibility worker failed: {failure.reason}"
            fresh = {i: {b: not_checked(b, why).to_json() for b in backends_for(items[i][1])} for i in todo}
    return [fresh[i] if i in fresh else copy.deepcopy(known[i]) for i in range(len(items))]


def describe(backend: str, entry: dict) -> str:
    """``gpu: 5 of 6 ops in 2 partitions; unsupported: CONV_3D`` (or why it was not checked)."""
    if not entry.get("checked"):
        return f"{backend}: not checked ({entry.get('reason') or 'no reason recorded'})"
    refused = entry.get("unsupported") or []
    parts = f", {entry.get('partitions')} partitions" if entry.get("partitions") not in (None, 1) else ""
    text = f"{backend}: {entry.get('ops_supported')} of {entry.get('ops_total')} ops{parts}"
    return text + (f"; unsupported: {', '.join(map(str, refused))}" if refused else "; every op supported")


def unmet(entries: dict, backends) -> list[str]:
    """One phrase per required backend that does not take the whole model (or was not checked)."""
    problems = []
    for backend in backends:
        entry = entries.get(backend)
        if entry is None:
            problems.append(f"{backend}: not checked (no result)")
        elif not (entry.get("checked") and entry.get("supported")):
            problems.append(describe(backend, entry))
    return problems


def parse_requirements(specs, targets=None) -> dict:
    """``["tflite:gpu", "onnx:nnapi,coreml"]`` -> ``{"tflite": ["gpu"], "onnx": ["nnapi", "coreml"]}``.

    Unknown targets or backends, and targets not among ``targets`` (when given), are the user's error.
    """
    from ondevice.validators.compatibility import all_backends

    known = all_backends()
    required: dict = {}
    for spec in specs or ():
        target, _, names = str(spec).partition(":")
        backends = [b.strip() for b in names.split(",") if b.strip()]
        if target not in known:
            raise BadInputError(f"--require {spec}: unknown target {target!r}; checked targets: {', '.join(known)}")
        if not backends:
            raise BadInputError(f"--require {spec}: name a backend, e.g. {target}:{known[target][0]}")
        bad = [b for b in backends if b not in known[target]]
        if bad:
            raise BadInputError(
                f"--require {spec}: unknown {target} backend {bad[0]!r}; choose from {', '.join(known[target])}"
            )
        if targets is not None and target not in targets:
            raise BadInputError(f"--require {spec}: {target} is not among the targets made ({', '.join(targets)})")
        required.setdefault(target, [])
        required[target] += [b for b in backends if b not in required[target]]
    return required
