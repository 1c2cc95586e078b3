"""The report: what was judged, the numbers, the verdict, and the exit code a pipeline acts on."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._paths import write_text_atomic
from .core.errors import BadInputError
from .core.vocab import STATUSES, exit_code_of

Json = dict[str, Any]  # a JSON object as json.loads gives it

SCHEMA_VERSION = 1


@dataclass
class TargetResult:
    """One target's outcome; ``parity`` and ``latency`` are the validators' JSON forms."""

    target: str
    status: str
    quantize: str | None = None
    error: str | None = None
    artifact: str | None = None
    strategy: str | None = None
    size_bytes: int | None = None
    runtime: str | None = None
    parity: Json | None = None
    latency: Json | None = None
    source_latency: Json | None = None
    footprint: Json | None = None
    parity_vs_float: Json | None = None  # quantized artifacts: judged against their float sibling
    precision: Json | None = None  # requested vs found in the artifact file
    shapes: list[Json] | None = None  # parity at a second shape, for axes kept dynamic
    isa_checks: list[Json] | None = None  # int8: parity per CPU class (native, emulated AVX2)
    timings: dict[str, Any] = field(
        default_factory=dict
    )  # stage -> seconds (strategy:<name>, export, load, latency...)
    io: Json | None = None  # each source input/output's artifact tensor, layout and how matched
    divergence: Json | None = None  # parity failed: the first diverging layer (validators.divergence)
    delegation: Json | None = None  # ExecuTorch: ops each delegate took, ops left on portable kernels
    compatibility: Json | None = None  # backend -> ops it takes (validators.compatibility)
    keep_float: Json | None = None  # --keep-float: layers left in float, rounds tried, size/latency cost
    inconclusive: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``onnx`` for a float artifact, ``onnx[int8]`` for a quantized one."""
        return f"{self.target}[{self.quantize}]" if self.quantize else self.target

    def to_json(self) -> Json:
        return dict(self.__dict__)


@dataclass
class Report:
    """Truthy when every target passed; round-trips through ``report.json``."""

    source: Json
    environment: Json
    inputs: Json
    targets: list[TargetResult]
    allow_inconclusive: bool = False
    run: dict[str, Any] = field(default_factory=dict)  # the whole run: wall_s, peak_rss_mb

    @property
    def exit_code(self) -> int:
        if not self.targets:
            return 2
        codes = [
            0 if (t.status == "inconclusive" and self.allow_inconclusive) else exit_code_of(t.status)
            for t in self.targets
        ]
        return max(codes)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> Json:
        return {
            "schema_version": SCHEMA_VERSION,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "allow_inconclusive": self.allow_inconclusive,
            "source": self.source,
            "environment": self.environment,
            "inputs": self.inputs,
            "targets": [t.to_json() for t in self.targets],
            "run": self.run,
        }

    def json_text(self, folder: str | os.PathLike[str]) -> str:
        """``report.json``'s text for a file in ``folder``: artifact paths become relative to it."""
        data = self.to_json()
        for entry in data["targets"]:
            if entry.get("artifact"):
                entry["artifact"] = os.path.relpath(entry["artifact"], Path(folder).resolve())
        return json.dumps(data, indent=2)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``report.json`` alone (artifact paths relative to its folder).

        The readable forms and the gate's verdict are written with it by ``ondevice.publish.publish``.
        """
        path = Path(path)
        if path.suffix in (".md", ".html", ".xml"):
            raise BadInputError(
                f"Report.write writes JSON; for {path.name} use ondevice.publish.publish(report, folder) "
                "or ondevice.render.render(report, format)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.json_text(path.parent))

    def failures(self) -> list[str]:
        """One short phrase per target that did not pass."""
        out = []
        for t in self.targets:
            if t.status == "passed" or (t.status == "inconclusive" and self.allow_inconclusive):
                continue
            out.append(f"{t.label}: {t.status}" + (f": {t.error}" if t.error else ""))
        return out

    def verdict(self, path: object = None) -> str:
        """The one line every command ends with."""
        where = f" - report: {path}" if path else ""
        if self.passed:
            return f"PASSED ({', '.join(t.label for t in self.targets)}){where}"
        return f"FAILED ({'; '.join(self.failures()) or 'no targets'}){where}"


def load_report(path: str | os.PathLike[str]) -> Report:
    """Read a report.json written by ``Report.write``."""
    from ._schema import report_problem

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"report not found: {path}") from None
    except IsADirectoryError:
        raise BadInputError(f"report {path} is a folder; give the report.json file") from None
    except OSError as exc:
        raise BadInputError(f"cannot read report {path}: {exc.strerror or exc}") from exc
    except (ValueError, RecursionError) as exc:
        raise BadInputError(f"malformed report {path}: {type(exc).__name__}: {exc}") from exc
    problem = report_problem(data, SCHEMA_VERSION, STATUSES)
    if problem:
        raise BadInputError(f"malformed report {path}: {problem}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BadInputError(
            f"report {path} has schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    targets = [
        TargetResult(**{k: v for k, v in t.items() if k in TargetResult.__dataclass_fields__}) for t in data["targets"]
    ]
    return Report(
        data["source"],
        data["environment"],
        data["inputs"],
        targets,
        data.get("allow_inconclusive", False),
        data.get("run") if isinstance(data.get("run"), dict) else {},
    )


def environment(threads: int, packages: dict[str, str]) -> Json:
    """Where the numbers were measured: interpreter, platform, threads, packages and the CPU."""
    from .cpu import cpu_info

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "threads": threads,
        "packages": dict(sorted(packages.items())),
        "cpu": cpu_info(),
    }
