"""One model of a zoo run, in a process of its own: load, export (or restore from the cache), validate, gate.

Started as ``python -m ondevice.zoo.job REQUEST.json`` by ``process.run_job``; it writes the model's
outcome (exit code, verdict line, cache use) to the request's ``result`` path atomically and exits with
the exit code, skipping interpreter teardown. Whatever it cannot say (a crash, a hang, memory) its
supervisor says for it. It ends itself when its supervisor dies, so an interrupted run leaves nothing running.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from ..core.errors import OndeviceError
from ..core.vocab import ExitCode


def main(request_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    _die_with_parent(os.getppid())
    started = time.monotonic()
    try:
        outcome = run_model(request)
    except OndeviceError as exc:
        outcome = {"exit_code": exc.exit_code, "verdict": f"FAILED ({exc})"}
    except SystemExit as exc:
        outcome = {
            "exit_code": int(ExitCode.INTERNAL),
            "verdict": f"FAILED (user code called sys.exit({exc.code!r}) during the run; nothing was checked)",
        }
    except Exception as exc:
        traceback.print_exc()
        outcome = {
            "exit_code": int(ExitCode.INTERNAL),
            "verdict": f"FAILED (internal error: {type(exc).__name__}: {exc})",
        }
    outcome["seconds"] = round(time.monotonic() - started, 3)
    _write_atomic(Path(request["result"]), json.dumps(outcome, indent=2))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(outcome["exit_code"])


def run_model(request: dict) -> dict:
    """``check`` of one model with the zoo's conversion cache; returns exit code, verdict and cache use."""
    from .. import progress
    from .._paths import REPORT_FILES, clear_previous, output_folder
    from ..api import _source
    from ..core.scratch import run_scratch
    from ..gate import load_policy
    from ..options import default_threads

    opts, out = request["options"], Path(request["out"])
    started = time.perf_counter()
    with progress.reporting(enabled=True), run_scratch(out, opts.get("keep_work", False)):
        clear_previous(output_folder(out), (*REPORT_FILES, "manifest.json"))
        policy = load_policy(opts["policy"]) if opts.get("policy") else None
        source = _source(
            request["source"],
            inputs=opts.get("input") or [],
            trust_pickle=opts.get("trust_pickle", False),
            trust_graph=opts.get("trust_graph", False),
        )
        threads = opts.get("threads") or default_threads()
        artifacts, cached = _export(source, opts, out, cache_dir=request.get("cache"), threads=threads)
        trusted = request.get("trust_cache")
        report = _trusted(request, opts, cached, threads=threads, out=out) if trusted else None
        if report is None:
            report = _validated(
                source, artifacts, opts, threads=threads, started=started, cache_dir=request.get("cache"), cached=cached
            )
        return _publish(report, policy, out / "report.json", cached)


def _validated(source, artifacts, opts: dict, threads: int, started: float, cache_dir, cached):
    """Validate the artifacts (restored or made); a validated cache entry keeps the report for --trust-cache."""
    from ..pipeline import run_facts
    from . import cache

    report = _validate(source, artifacts, opts, threads)
    report.run = {**run_facts(started), "validate_s": report.run.get("wall_s")}
    if cached is None:
        return report
    report.run["cache"] = {**cached, "revalidated": cached["hit"]}
    if cached["hit"]:
        for target in report.targets:
            if target.artifact:
                target.notes.append(f"{cache.CACHE_NOTE} (key {cached['key'][:16]}), validated again")
    if cached["hit"] or cached.get("stored"):
        cache.keep_report(cache_dir, cached["key"], cache.validation_key(opts, threads), report)
    return report


def _trusted(request: dict, opts: dict, cached, threads: int, out: Path):
    """--trust-cache: the report validated when the cache entry was made, if made with these settings."""
    from . import cache

    if not cached or not cached["hit"]:
        return None
    report = cache.kept_report(request["cache"], cached["key"], cache.validation_key(opts, threads), out)
    if report is None:
        return None
    report.run["cache"] = {**cached, "revalidated": False}
    for target in report.targets:
        if target.artifact:
            target.notes.append(
                f"{cache.CACHE_NOTE} (key {cached['key'][:16]}), not validated again "
                "(--trust-cache): its numbers are from the run that made the entry"
            )
    return report


def _export(source, opts: dict, out: Path, cache_dir, threads: int):
    """The export's Artifacts, from the cache when it holds this key; (artifacts, cache record or None)."""
    from .. import progress
    from ..artifacts import Artifacts
    from ..core.scratch import remove_previous_artifacts
    from . import cache

    if not cache_dir:
        return _convert(source, opts, out, threads), None
    key, parts = cache.key_for(source, opts)
    remove_previous_artifacts(out, keep=[source.path] if source.path else [])
    record = cache.restore(cache_dir, key, out)
    if record is not None:
        progress.stage("cache", f"artifacts restored from the conversion cache ({key[:16]})")
        return Artifacts.load(out), {"hit": True, "key": key, "created": record.get("created")}
    artifacts = _convert(source, opts, out, threads)
    stored = cache.store(cache_dir, key, parts, artifacts)
    return artifacts, {"hit": False, "key": key, "stored": stored is not None}


def _convert(source, opts: dict, out: Path, threads: int):
    from ..exporter import export_source
    from ..options import ExportOptions

    return export_source(source, out, ExportOptions.from_flags({**opts, "threads": threads}))


def _validate(source, artifacts, opts: dict, threads: int):
    from ..options import ValidateOptions
    from ..pipeline import validate_artifacts

    return validate_artifacts(source, artifacts, ValidateOptions.from_flags({**opts, "threads": threads}))


def _publish(report, policy, path: Path, cached) -> dict:
    """report.json (+ gate.json with a policy) and the readable forms; the model's exit code and verdict."""
    from ..gate import run_gate
    from ..publish import conclusion, publish

    gate = run_gate(report, policy, None, path) if policy is not None else None
    publish(report, path.parent, gate, name=path.name)
    code, verdict = conclusion(report, gate, path)
    return {"exit_code": code, "verdict": verdict, "cache": cached}


def _die_with_parent(parent: int) -> None:
    """End this model's whole process group when the supervisor that started it is gone (killed, Ctrl-C)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os.killpg(os.getpgrp(), 9)

    threading.Thread(target=watch, daemon=True).start()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    from ..core.lazy import quiet_environment

    quiet_environment()
    main(sys.argv[1])
