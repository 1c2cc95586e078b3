"""What a run leaves behind: report.json, its readable forms and the gate's verdict, written once, after the gate.

``check``, ``validate`` (with or without ``--policy``), the zoo and the Python API all end here, so
every file shows the same verdict: the Markdown, HTML and JUnit forms carry the gate's section
whenever a gate ran, and nothing is rendered before the gate has spoken.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ._paths import write_text_atomic
from .gate import Verdict
from .render import render
from .report import Report

GATE_FILE = "gate.json"


def published_names(name: str = "report.json") -> tuple[str, ...]:
    """The files ``publish`` writes for a report named ``name`` (gate.json only when a gate ran)."""
    stem = Path(name).stem
    return name, f"{stem}.md", f"{stem}.html", "junit.xml", GATE_FILE


def publish(
    report: Report, out_dir: str | os.PathLike[str], verdict: Verdict | None = None, *, name: str = "report.json"
) -> Path:
    """Write ``out_dir``/report.json, report.md, report.html, junit.xml (and gate.json with a verdict).

    Each file is written once, atomically; report.json goes last, so a folder holding it holds the
    whole set. ``name`` renames the JSON (``validate --report``) and the .md/.html beside it. Returns
    the report.json path.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_name, md, html, junit, gate = published_names(name)
    for fmt, file in (("md", md), ("html", html), ("junit", junit)):
        write_text_atomic(folder / file, render(report, fmt, verdict))
    if verdict is not None:
        write_text_atomic(folder / gate, json.dumps(verdict.to_json(), indent=2) + "\n")
    return write_text_atomic(folder / json_name, report.json_text(folder))


def conclusion(report: Report, verdict: Verdict | None = None, path: object = None) -> tuple[int, str]:
    """The exit code and the one verdict line of a report judged by its gate (the worse of the two)."""
    if verdict is None or verdict.passed:
        return report.exit_code, report.verdict(path)
    where = f" - report: {path}" if path else ""
    reasons = "; ".join([*report.failures(), verdict.summary()])
    return max(report.exit_code, verdict.exit_code), f"FAILED ({reasons}){where}"
