"""Shape checks for a report.json read back from disk: a report is input like any other file.

The gate and the renderers trust the types of the fields they read; a report edited by hand, truncated
by a tool or written by an attacker must be refused with one line (exit 2), not crash them (exit 4)
or reach a reviewer's browser. Only the fields they read are checked; unknown fields are kept.
"""

from __future__ import annotations

import json
import math

_NUMBER_KEYS = (
    "max_abs_err",
    "mean_abs_err",
    "max_rel_err",
    "cosine",
    "snr_db",
    "atol",
    "rtol",
    "top1_agreement",
    "topk_agreement",
)
_LATENCY_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "speedup_vs_source", "load_ms")
_TEXT_KEYS = ("error", "artifact", "strategy", "runtime", "quantize")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(value, length: int | None = None) -> bool:
    return isinstance(value, list) and all(_number(v) for v in value) and (length is None or len(value) == length)


def _output_problem(out, where: str) -> str | None:
    if not isinstance(out, dict) or not isinstance(out.get("name"), str):
        return f"{where}: each output must be an object with a name"
    if not _number(out.get("max_abs_err")):
        return f"{where} {out['name']!r}: max_abs_err must be a number"
    bad = [k for k in _NUMBER_KEYS if out.get(k) is not None and not _number(out[k])]
    if bad:
        return f"{where} {out['name']!r}: {bad[0]} must be a number"
    hist = out.get("abs_err_hist")
    if hist is not None and not (
        isinstance(hist, dict)
        and _numbers(hist.get("counts"))
        and _numbers(hist.get("edges"), len(hist.get("counts") or ()) + 1)
    ):
        return f"{where} {out['name']!r}: abs_err_hist must hold counts and edges (one more edge than counts)"
    return None


def _latency_problem(latency, where: str) -> str | None:
    if latency is None:
        return None
    if not isinstance(latency, dict) or not _number(latency.get("p50_ms")):
        return f"{where}: latency must be an object with a numeric p50_ms"
    bad = [k for k in _LATENCY_KEYS if latency.get(k) is not None and not _number(latency[k])]
    if bad:
        return f"{where}: {bad[0]} must be a number"
    if latency.get("p50_ci95_ms") is not None and not _numbers(latency["p50_ci95_ms"], 2):
        return f"{where}: p50_ci95_ms must be two numbers"
    if latency.get("samples_ms") is not None and not _numbers(latency["samples_ms"]):
        return f"{where}: samples_ms must be a list of numbers"
    return None


def _target_problem(t, index: int, statuses) -> str | None:
    where = f"targets[{index}]"
    if not isinstance(t, dict):
        return f"{where} must be an object"
    if not isinstance(t.get("target"), str) or t.get("status") not in statuses:
        return f"{where} needs a target name and a status in {', '.join(statuses)}"
    bad = [k for k in _TEXT_KEYS if t.get(k) is not None and not isinstance(t[k], str)]
    if bad:
        return f"{where}: {bad[0]} must be text"
    if t.get("size_bytes") is not None and not _number(t["size_bytes"]):
        return f"{where}: size_bytes must be a number"
    for key in ("notes", "inconclusive"):
        if not isinstance(t.get(key, []), list) or not all(isinstance(v, str) for v in t.get(key, [])):
            return f"{where}: {key} must be a list of text"
    parity = t.get("parity")
    if parity is not None:
        if not isinstance(parity, dict) or not isinstance(parity.get("outputs", []), list):
            return f"{where}: parity must be an object with a list of outputs"
        for out in parity.get("outputs", []):
            problem = _output_problem(out, f"{where} output")
            if problem:
                return problem
    return (
        _latency_problem(t.get("latency"), where)
        or _latency_problem(t.get("source_latency"), where)
        or _compatibility_problem(t.get("compatibility"), where)
    )


def _compatibility_problem(compat, where: str) -> str | None:
    """``compatibility``: {backend: {checked, supported: bool, ops_*/partitions: numbers, unsupported: [text]}}."""
    if compat is None:
        return None
    if not isinstance(compat, dict) or not all(isinstance(e, dict) for e in compat.values()):
        return f"{where}: compatibility must map each backend to an object"
    for backend, entry in compat.items():
        if not isinstance(entry.get("checked"), bool) or not isinstance(entry.get("supported", False), bool):
            return f"{where}: compatibility {backend!r}: checked and supported must be true or false"
        bad = [
            k
            for k in ("ops_total", "ops_supported", "partitions", "coverage")
            if entry.get(k) is not None and not _number(entry[k])
        ]
        if bad:
            return f"{where}: compatibility {backend!r}: {bad[0]} must be a number"
        refused = entry.get("unsupported") or []
        if (
            not isinstance(refused, list)
            or not all(isinstance(v, str) for v in refused)
            or not isinstance(entry.get("reason") or "", str)
        ):
            return f"{where}: compatibility {backend!r}: unsupported must be a list of op names, reason text"
    return None


def report_problem(data, schema_version: int, statuses) -> str | None:
    """Why ``data`` (parsed report.json) cannot be judged or rendered; None when it can."""
    if not isinstance(data, dict):
        return f"a JSON object is expected, not {type(data).__name__}"
    if data.get("schema_version") != schema_version:
        return None  # the caller names the version problem itself
    for key in ("source", "environment", "inputs"):
        if not isinstance(data.get(key), dict):
            return f"{key!r} must be an object"
    if not isinstance(data.get("targets"), list):
        return "'targets' must be a list (a report lists the targets it judged)"
    for index, t in enumerate(data["targets"]):
        problem = _target_problem(t, index, statuses)
        if problem:
            return problem
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError:
        return "it holds text that is not valid Unicode (a lone surrogate)"
    return None


def finite(value) -> bool:
    """True for a finite number (plots skip the rest)."""
    return _number(value) and math.isfinite(value)
