"""Reports people read, from one report.json: Markdown for a pull request, single-file HTML, JUnit XML.

The HTML page is self-contained: styles and plots (SVG) are inline, nothing is fetched, so it can be
kept as a CI artifact and opened offline. Every renderer takes an optional gate ``Verdict`` and shows its
verdict and failed rules beside the report's own.
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import TYPE_CHECKING

from .report import Report, TargetResult

if TYPE_CHECKING:
    from .gate import Verdict

# One colour per role, shared by the table badges and the plots.
_OK, _BAD, _WARN, _INK, _MUTED, _GRID = "#1a7f37", "#cf222e", "#9a6700", "#1f2328", "#656d76", "#d0d7de"
_STATUS_COLOUR = {"passed": _OK, "failed": _BAD, "inconclusive": _WARN, "conversion_error": _BAD, "error": _BAD}


def _fmt(value, spec=".3g") -> str:
    return "-" if value is None else format(value, spec)


def _precision(t: TargetResult) -> str:
    return t.quantize or "fp32"


def _outputs(t: TargetResult) -> list:
    return (t.parity or {}).get("outputs") or []


def _worst(t: TargetResult, key: str, pick):
    values = [o[key] for o in _outputs(t) if o.get(key) is not None]
    return pick(values) if values else None


def _size(n) -> str:
    return "-" if not n else f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"


def _ci_text(latency: dict | None) -> str:
    ci = (latency or {}).get("p50_ci95_ms")
    return f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""


def _summary_rows(report: Report) -> list[list[str]]:
    """The summary table's cells, shared by Markdown and HTML."""
    rows = []
    for t in report.targets:
        lat, src = t.latency or {}, t.source_latency or {}
        rows.append(
            [
                t.target,
                t.status,
                _precision(t),
                t.strategy or "-",
                t.runtime or "-",
                _fmt(_worst(t, "max_abs_err", max)),
                _fmt(_worst(t, "cosine", min), ".6f"),
                _fmt(_worst(t, "snr_db", min), ".1f"),
                _fmt(lat.get("p50_ms")) + _ci_text(lat),
                _fmt(lat.get("p90_ms")),
                _fmt(src.get("p50_ms")),
                _size(t.size_bytes),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "target",
    "status",
    "precision",
    "strategy",
    "runtime",
    "max abs err",
    "min cosine",
    "min SNR dB",
    "p50 ms [95% CI]",
    "p90 ms",
    "source p50 ms",
    "size",
]
OUTPUT_HEADER = [
    "output",
    "max abs err",
    "mean abs err",
    "max rel err",
    "cosine",
    "SNR dB",
    "atol",
    "rtol",
    "passed",
    "problem",
]


def _output_cells(o: dict) -> list[str]:
    return [
        o["name"],
        _fmt(o.get("max_abs_err")),
        _fmt(o.get("mean_abs_err")),
        _fmt(o.get("max_rel_err")),
        _fmt(o.get("cosine"), ".8f"),
        _fmt(o.get("snr_db"), ".1f"),
        _fmt(o.get("atol"), "g"),
        _fmt(o.get("rtol"), "g"),
        "yes" if o.get("passed") else "no",
        o.get("problem") or "",
    ]


def _gate_cells(f) -> list[str]:
    def value(v):
        return "-" if v is None else (format(v, ".4g") if isinstance(v, float) else str(v))

    return [f.rule, f.where() or "-", value(f.actual), value(f.limit), value(f.baseline), f.message]


GATE_HEADER = ["rule", "where", "value", "limit", "baseline", "detail"]


# ---- Markdown --------------------------------------------------------------------------------------


def overall(report: Report, gate=None) -> tuple[bool, int]:
    """(passed, exit code) of the report and its gate together, as the command line returns them."""
    if gate is None:
        return report.passed, report.exit_code
    return report.passed and gate.passed, max(report.exit_code, gate.exit_code)


def _md_cell(text) -> str:
    # Markdown renders inline HTML: names and errors from a model must not become markup in a PR comment.
    return escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]


def to_markdown(report: Report, gate=None) -> str:
    """A summary fit for a pull-request comment: verdict, table, gate rules, per-output errors."""
    passed, code = overall(report, gate)
    lines = [
        f"## ondevice: {'PASSED' if passed else 'FAILED'} (exit {code})",
        "",
        f"Source `{_md_cell(report.source.get('spec'))}` ({_md_cell(report.source.get('framework'))}), "
        + _md_cell(
            f"{report.inputs.get('samples')} {report.inputs.get('kind')} samples, seed "
            f"{report.inputs.get('seed')}, {report.environment.get('threads')} threads."
        ),
        "",
        f"Measured on {_md_cell(_cpu_line(report))}.",
        "",
    ]
    lines += _md_table(SUMMARY_HEADER, _summary_rows(report))
    if gate is not None:
        lines += [
            "",
            f"### Gate: {'PASSED' if gate.passed else 'FAILED'} (exit {gate.exit_code})",
            "",
            gate.summary() + (f" (policy `{gate.policy}`)" if gate.policy else ""),
        ]
        if gate.failures:
            lines += ["", *_md_table(GATE_HEADER, [_gate_cells(f) for f in gate.failures])]
        lines += [f"- note: {n}" for n in gate.notes]
    problems = [f"- **{t.target}** ({_precision(t)}): {_md_cell(t.error)}" for t in report.targets if t.error]
    if problems:
        lines += ["", "### Problems", *problems]
    isa = [f"- **{t.label}**: {_md_cell(isa_summary(t))}" for t in report.targets if t.isa_checks]
    if isa:
        lines += ["", "### int8 per CPU class", *isa]
    where = [f"- **{t.label}**: {_md_cell(divergence_line(t.divergence))}" for t in report.targets if t.divergence]
    if where:
        lines += ["", "### Where parity broke", *where]
    for t in report.targets:
        if isinstance(t.keep_float, dict):
            lines += [
                "",
                f"### Mixed precision: {t.label}",
                "",
                _md_cell(keep_float_line(t.keep_float)),
                "",
                *_md_table(KEEP_FLOAT_HEADER, keep_float_rows(t.keep_float)),
            ]
            cost = keep_float_cost(t.keep_float)
            lines += ["", _md_cell(cost)] if cost else []
    delegated = [
        f"- **{t.label}**: {_md_cell(delegation_line(t.delegation))}"
        for t in report.targets
        if isinstance(t.delegation, dict)
    ]
    if delegated:
        lines += ["", "### Delegates", *delegated]
    compat = compatibility_rows(report)
    if compat:
        lines += ["", "### Accelerator compatibility", "", *_md_table(COMPATIBILITY_HEADER, compat)]
    rows = [[t.target, *_output_cells(o)] for t in report.targets for o in _outputs(t)]
    if rows:
        lines += ["", "<details><summary>Errors per output</summary>", ""]
        lines += [*_md_table(["target", *OUTPUT_HEADER], rows), "", "</details>"]
    timing_rows = _timing_rows(report)
    if timing_rows:
        lines += ["", f"<details><summary>Where the time went ({_md_cell(_run_line(report))})</summary>", ""]
        lines += [*_md_table(TIMING_HEADER, timing_rows), "", "</details>"]
    return "\n".join(lines) + "\n"


TIMING_HEADER = [
    "target",
    "precision",
    "export s",
    "strategies tried",
    "load s",
    "parity run s",
    "latency s",
    "explain s",
    "int8 CPU check s",
    "worker s",
]
_TIMING_KEYS = ("export", None, "load", "parity_run", "latency", "explain", "isa_check", "worker")


def _timing_rows(report: Report) -> list[list[str]]:
    """Seconds per stage and target (report.json targets[].timings); empty for reports without them."""
    rows = []
    for t in report.targets:
        if not t.timings:
            continue
        tried = ", ".join(f"{k.split(':', 1)[1]} {v:.1f}" for k, v in t.timings.items() if k.startswith("strategy:"))
        cells = [
            (tried or "-") if key is None else (f"{t.timings[key]:.2f}" if key in t.timings else "-")
            for key in _TIMING_KEYS
        ]
        rows.append([t.target, _precision(t), *cells])
    return rows


def _run_line(report: Report) -> str:
    run = report.run or {}
    if "wall_s" not in run:
        return "run time not recorded"
    return f"run {run['wall_s']:.1f} s wall, peak memory {run.get('peak_rss_mb', 0):.0f} MiB"


# ---- accelerator compatibility ---------------------------------------------------------------------

COMPATIBILITY_HEADER = [
    "target",
    "backend",
    "runs whole",
    "ops taken",
    "coverage",
    "partitions",
    "unsupported ops / why not checked",
]


def compatibility_rows(report: Report) -> list[list[str]]:
    """One row per target and backend (validators.compatibility), shared by Markdown and HTML."""
    rows = []
    for t in report.targets:
        for backend, entry in (t.compatibility or {}).items():
            if not entry.get("checked"):
                why = entry.get("reason") or "no reason recorded"
                rows.append([t.label, backend, "not checked", "-", "-", "-", why])
                continue
            coverage = entry.get("coverage")
            rows.append(
                [
                    t.label,
                    backend,
                    "yes" if entry.get("supported") else "no",
                    f"{entry.get('ops_supported')} of {entry.get('ops_total')}",
                    "-" if coverage is None else f"{100 * coverage:.0f}%",
                    str(entry.get("partitions")),
                    ", ".join(map(str, entry.get("unsupported") or [])) or "-",
                ]
            )
    return rows


def _compatibility_html(report: Report) -> str:
    rows = compatibility_rows(report)
    if not rows:
        return ""
    return (
        '<section id="compatibility"><h2>Accelerator compatibility</h2><p class="muted">Ops each backend '
        "takes, read from the artifact; not checked is never a pass (docs/compatibility.md).</p>"
        + _html_table(COMPATIBILITY_HEADER, rows, (4, 5), "compatibility")
        + "</section>"
    )


# ---- JUnit XML -------------------------------------------------------------------------------------

CHECKS = ("export", "parity", "latency", "size")
# Which check a gate rule belongs to; anything else (status, regression.newly_failing) goes to parity.
_RULE_CHECK = {
    "require.target": "export",
    "compatibility": "export",
    "latency": "latency",
    "regression.latency_p50": "latency",
    "size": "size",
    "regression.size": "size",
    "regression.missing_target": "export",
}


def _rule_check(rule: str) -> str:
    return _RULE_CHECK.get(rule) or _RULE_CHECK.get(rule.split(".")[0]) or "parity"


def _case_outcome(t: TargetResult, check: str, allow_inconclusive: bool):
    """(kind, message) where kind is None (passed), 'failure', 'error' or 'skipped'."""
    if t.status == "conversion_error":
        return ("failure", t.error or "conversion failed") if check == "export" else ("skipped", "not exported")
    if t.status == "error" and check != "export":
        return ("error", t.error or "runtime error") if check == "parity" else ("skipped", "did not run")
    if check == "parity" and (t.status == "failed" or (t.status == "inconclusive" and not allow_inconclusive)):
        return "failure", t.error or t.status
    if check == "latency" and not t.latency:
        return "skipped", "not measured"
    return None, ""


def _case_text(t: TargetResult, check: str) -> str:
    if check == "parity":
        return "; ".join(
            f"{o['name']}: max abs err {_fmt(o.get('max_abs_err'))}, cosine {_fmt(o.get('cosine'), '.6f')}"
            for o in _outputs(t)
        )
    if check == "latency" and t.latency:
        return f"p50 {_fmt(t.latency['p50_ms'])} ms{_ci_text(t.latency)}, p90 {_fmt(t.latency.get('p90_ms'))} ms"
    if check == "size":
        return f"{t.size_bytes} bytes" if t.size_bytes else ""
    if check == "export" and isinstance(t.delegation, dict):
        return "; ".join(filter(None, [f"strategy {t.strategy}" if t.strategy else "", delegation_line(t.delegation)]))
    return f"strategy {t.strategy}" if t.strategy else ""


def to_junit(report: Report, gate=None) -> str:
    """JUnit XML: one test case per target x check (export, parity, latency, size)."""
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name="ondevice")
    keys = [(t.target, _precision(t)) for t in report.targets]
    gate_failures = list(gate.failures) if gate is not None else []
    # A required target that is not in the report still gets its cases, all failing at export.
    keys += sorted({(f.target, f.precision) for f in gate_failures if f.target and (f.target, f.precision) not in keys})
    by_key = {(t.target, _precision(t)): t for t in report.targets}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for key in keys:
        t = by_key.get(key) or TargetResult(key[0], "conversion_error", error="required but not in the report")
        for check in CHECKS:
            kind, message = _case_outcome(t, check, report.allow_inconclusive)
            rules = [f for f in gate_failures if (f.target, f.precision) == key and _rule_check(f.rule) == check]
            if rules and kind in (None, "skipped"):
                kind, message = "failure", "; ".join(f.line() for f in rules)
            case = ET.SubElement(suite, "testcase", classname=f"ondevice.{key[0]}.{key[1]}", name=check, time="0")
            if kind:
                ET.SubElement(case, kind, message=message[:500]).text = message
                counts["failures" if kind == "failure" else "errors" if kind == "error" else "skipped"] += 1
            ET.SubElement(case, "system-out").text = _case_text(t, check)
            counts["tests"] += 1
    for f in (f for f in gate_failures if not f.target):
        case = ET.SubElement(suite, "testcase", classname="ondevice.gate", name=f.rule, time="0")
        ET.SubElement(case, "failure", message=f.message).text = f.message
        counts["tests"] += 1
        counts["failures"] += 1
    for name, value in counts.items():
        suite.set(name, str(value))
    _xml_clean(suite)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


# Characters XML 1.0 cannot carry at all (control characters, lone surrogates, U+FFFE/FFFF).
_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_clean(root) -> None:
    """Show XML-invalid characters (from model or output names) as escapes, so CI parsers accept the file."""

    def clean(text):
        return (
            _XML_INVALID.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)
            if isinstance(text, str)
            else text
        )

    for element in root.iter():
        element.text = clean(element.text)
        for key, value in element.attrib.items():
            element.attrib[key] = clean(value)


# ---- inline SVG plots ------------------------------------------------------------------------------


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = [
        m * 10.0**k
        for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for m in (1, 2, 5)
        if lo <= m * 10.0**k <= hi
    ]
    return ticks if len(ticks) <= 12 else [v for v in ticks if math.isclose(10 ** round(math.log10(v)), v)]


def _text(x, y, text, anchor="start", size=11, colour=_INK, extra="") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{colour}" text-anchor="{anchor}"{extra}>'
        f"{escape(str(text))}</text>"
    )


def _latency_rows(report: Report) -> list[tuple[str, dict]]:
    rows = []
    source = next((t.source_latency for t in report.targets if t.source_latency), None)
    if source:
        rows.append(("source model", source))
    return rows + [(f"{t.target} {_precision(t)}", t.latency) for t in report.targets if t.latency]


def latency_svg(report: Report) -> str:
    """Each runtime's latency distribution on one log axis: p50 with its 95% CI, p90, p99, mean, samples."""
    rows = _latency_rows(report)
    if not rows:
        return '<p class="muted">No latency was measured.</p>'
    values = [
        v
        for _, lat in rows
        for v in (
            lat["p50_ms"],
            lat.get("p90_ms"),
            lat.get("p99_ms"),
            *(lat.get("p50_ci95_ms") or ()),
            *(lat.get("samples_ms") or ()),
        )
        if v is not None and math.isfinite(v) and v > 0
    ]
    if not values:
        return '<p class="muted">No latency was measured.</p>'
    lo, hi = min(values) / 1.3, max(values) * 1.3
    left, width, top, row_h = 130, 470, 34, 30
    height = top + row_h * len(rows) + 34

    def x(v):
        return left + width * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    parts = [
        f'<svg class="plot" role="img" aria-label="latency distributions" xmlns="http://www.w3.org/2000/svg" '
        f'width="760" height="{height}" viewBox="0 0 760 {height}">',
        _latency_legend(),
    ]
    for v in _log_ticks(lo, hi):
        parts.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{top - 6}" y2="{height - 28}" stroke="{_GRID}"/>')
        parts.append(_text(x(v), height - 14, f"{v:g}", "middle", 10, _MUTED))
    parts.append(_text(left + width / 2, height - 2, "milliseconds per inference (log scale)", "middle", 10, _MUTED))
    for index, (label, lat) in enumerate(rows):
        parts += _latency_row(top + row_h * index + row_h / 2, label, lat, x, left + width)
    return "\n".join([*parts, "</svg>"])


def _latency_legend() -> str:
    return "".join(
        [
            '<rect x="130" y="8" width="18" height="12" fill="#0969da" fill-opacity="0.3"/>',
            _text(152, 18, "p50 and its 95% CI", size=10),
            '<rect x="270" y="10" width="18" height="8" fill="#8ab4f8"/>',
            _text(292, 18, "p50 to p90", size=10),
            f'<line x1="370" x2="388" y1="14" y2="14" stroke="{_MUTED}" stroke-width="2"/>',
            _text(392, 18, "p90 to p99", size=10),
            f'<circle cx="470" cy="14" r="3.5" fill="white" stroke="{_INK}"/>',
            _text(478, 18, "mean", size=10),
        ]
    )


def _latency_row(cy: float, label: str, lat: dict, x, right: float) -> list[str]:
    p50, p90, p99 = lat["p50_ms"], lat.get("p90_ms") or lat["p50_ms"], lat.get("p99_ms") or lat["p50_ms"]
    ci = lat.get("p50_ci95_ms") or (p50, p50)
    out = [
        _text(8, cy + 4, label),
        f'<line x1="{x(p90):.1f}" x2="{x(p99):.1f}" y1="{cy}" y2="{cy}" stroke="{_MUTED}" stroke-width="2"/>',
        f'<rect x="{x(p50):.1f}" y="{cy - 5}" width="{max(x(p90) - x(p50), 1):.1f}" height="10" fill="#8ab4f8"/>',
        f'<rect x="{x(ci[0]):.1f}" y="{cy - 9}" width="{max(x(ci[1]) - x(ci[0]), 2):.1f}" height="18" '
        f'fill="#0969da" fill-opacity="0.3"/>',
        f'<line x1="{x(p50):.1f}" x2="{x(p50):.1f}" y1="{cy - 9}" y2="{cy + 9}" stroke="{_INK}" stroke-width="2"/>',
    ]
    out += [
        f'<circle cx="{x(v):.1f}" cy="{cy}" r="1.6" fill="{_INK}" fill-opacity="0.35"/>'
        for v in lat.get("samples_ms") or ()
    ]
    if lat.get("mean_ms"):
        out.append(f'<circle cx="{x(lat["mean_ms"]):.1f}" cy="{cy}" r="3.5" fill="white" stroke="{_INK}"/>')
    out.append(_text(right + 12, cy + 4, f"p50 {p50:.3g} ms, p99 {p99:.3g}", size=10, colour=_MUTED))
    return out


def _edge_label(v: float) -> str:
    return "0" if v == 0 else "inf" if v >= 1e29 else f"1e{round(math.log10(v))}"


def _atol_position(edges: list, atol: float) -> float | None:
    """Where atol falls on the bin-index axis (bin i spans i..i+1), interpolating in log space."""
    if not atol or atol <= 0:
        return None
    for i in range(1, len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        if lo <= atol < hi:
            return i + (math.log10(atol) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return None


def error_svg(out: dict) -> str:
    """Histogram of |artifact - source| per decade for one output, with the atol it was judged by."""
    hist = out.get("abs_err_hist")
    if not hist or not hist.get("counts"):
        return '<p class="muted">No error histogram in this report for this output.</p>'
    counts, edges = hist["counts"], hist["edges"]
    total = sum(counts) or 1
    left, width, top, plot_h = 44, 420, 26, 110
    bar_w = width / len(counts)
    height = top + plot_h + 40
    peak = max(counts) / total or 1
    parts = [
        f'<svg class="plot hist" role="img" aria-label="error histogram for {escape(out["name"])}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
        f'viewBox="0 0 {left + width + 20} {height}">',
        _text(left, 14, f"{out['name']}: share of {total} elements per |error| decade", size=11),
        f'<line x1="{left}" x2="{left + width}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="{_MUTED}"/>',
        _text(left - 4, top + 8, f"{100 * peak:.0f}%", "end", 9, _MUTED),
        _text(left - 4, top + plot_h, "0", "end", 9, _MUTED),
    ]
    colour = _OK if out.get("passed") else _BAD
    for i, count in enumerate(counts):
        h = plot_h * (count / total) / peak
        if count:
            parts.append(
                f'<rect x="{left + i * bar_w + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{max(h, 1):.1f}" fill="{colour}" fill-opacity="0.75"><title>{count} elements in '
                f"[{_edge_label(edges[i])}, {_edge_label(edges[i + 1])})</title></rect>"
            )
    for i in range(0, len(edges), 2):
        parts.append(_text(left + i * bar_w, top + plot_h + 14, _edge_label(edges[i]), "middle", 9, _MUTED))
    parts.append(_text(left + width / 2, height - 4, "absolute error (decade bins)", "middle", 10, _MUTED))
    pos = _atol_position(edges, out.get("atol") or 0)
    if pos is not None:
        ax = left + pos * bar_w
        parts += [
            f'<line x1="{ax:.1f}" x2="{ax:.1f}" y1="{top - 4}" y2="{top + plot_h}" stroke="{_BAD}" '
            f'stroke-dasharray="4 3"/>',
            _text(ax + 3, top + 4, f"atol {out['atol']:g}", size=9, colour=_BAD),
        ]
    return "\n".join([*parts, "</svg>"])


# ---- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1f2328;margin:24px auto;
max-width:1180px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.muted{color:#656d76}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.verdict{font-size:15px;padding:8px 12px;border-radius:6px;margin:10px 0;border:1px solid}
.pass{background:#dafbe1;border-color:#1a7f37}.fail{background:#ffebe9;border-color:#cf222e}
.error{color:#cf222e}.plots{display:flex;flex-wrap:wrap;gap:12px}svg.plot{background:#fff}
"""


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{_STATUS_COLOUR.get(status, _MUTED)}">{escape(status)}</span>'


def _cell(value: str, index: int, numeric: set) -> str:
    return f'<td class="num">{escape(value)}</td>' if index in numeric else f"<td>{escape(value)}</td>"


def _html_table(header: list[str], rows: list[list[str]], numeric=(), css="", status_col=None) -> str:
    numeric = set(numeric)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = [_badge(c) if i == status_col else None for i, c in enumerate(row)]
        body.append(
            "<tr>"
            + "".join(f"<td>{cells[i]}</td>" if cells[i] else _cell(c, i, numeric) for i, c in enumerate(row))
            + "</tr>"
        )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _gate_html(gate) -> str:
    if gate is None:
        return ""
    css = "pass" if gate.passed else "fail"
    parts = [
        f'<section id="gate"><h2>Release gate</h2><div class="verdict {css}"><b>{"PASSED" if gate.passed else "FAILED"}'
        f"</b> (exit {gate.exit_code}): {escape(gate.summary())}"
        + (f" — policy <code>{escape(gate.policy)}</code>" if gate.policy else "")
        + "</div>"
    ]
    if gate.failures:
        parts.append(_html_table(GATE_HEADER, [_gate_cells(f) for f in gate.failures], (2, 3, 4), "gate"))
    parts += [f'<p class="muted">note: {escape(n)}</p>' for n in gate.notes]
    return "".join(parts) + "</section>"


def _target_html(t: TargetResult) -> str:
    head = f"<h3>{escape(t.target)} ({escape(_precision(t))}) {_badge(t.status)}</h3>"
    facts = [
        f"artifact <code>{escape(t.artifact)}</code>" if t.artifact else "",
        f"strategy {escape(t.strategy)}" if t.strategy else "",
        f"runtime {escape(t.runtime)}" if t.runtime else "",
        _size(t.size_bytes) if t.size_bytes else "",
    ]
    parts = [head, f'<p class="muted">{" · ".join(f for f in facts if f)}</p>']
    if t.error:
        parts.append(f'<p class="error">{escape(t.error)}</p>')
    if t.isa_checks:
        parts.append(f'<p class="muted">CPU classes: {escape(isa_summary(t))}</p>')
    if isinstance(t.delegation, dict):
        parts.append(f'<p class="muted">Delegates: {escape(delegation_line(t.delegation))}</p>')
    if isinstance(t.keep_float, dict):
        parts.append(
            f"<p>{escape(keep_float_line(t.keep_float))}</p>"
            + _html_table(KEEP_FLOAT_HEADER, keep_float_rows(t.keep_float), range(2, 6), "keep-float")
            + f'<p class="muted">{escape(keep_float_cost(t.keep_float))}</p>'
        )
    if t.divergence:
        parts.append(f'<p class="error">{escape(divergence_line(t.divergence))}</p>' + divergence_svg(t.divergence))
    outs = _outputs(t)
    if outs:
        parts.append(_html_table(OUTPUT_HEADER, [_output_cells(o) for o in outs], range(1, 8), "outputs"))
        parts.append('<div class="plots">' + "".join(error_svg(o) for o in outs) + "</div>")
    return f'<section class="target" id="target-{escape(t.target)}-{escape(_precision(t))}">{"".join(parts)}</section>'


KEEP_FLOAT_HEADER = ["round", "layer added", "float weights", "max err / peak", "SNR dB", "cosine", "parity"]


def keep_float_line(record: dict) -> str:
    """--keep-float in one line: the layers kept in float, their share of the weights, the outcome."""
    kept = ", ".join(str(entry.get("layer")) for entry in record.get("layers") or [] if isinstance(entry, dict))
    reached = "int8 parity reached" if record.get("passed") else "int8 parity NOT reached"
    cap = f", cap {_fmt(100 * (record.get('cap') or 0), '.0f')}%" if record.get("mode") == "auto" else ""
    return (
        f"--keep-float {record.get('mode')}: {kept or 'nothing'} kept in float "
        f"({_fmt(100 * (record.get('float_weight_fraction') or 0), '.1f')}% of the weight bytes{cap}); "
        f"{reached} on {record.get('judged_on')}: {record.get('stopped')}"
    )


def keep_float_rows(record: dict) -> list[list[str]]:
    """One row per quantization tried, the plain int8 first."""
    rows = []
    for row in record.get("rounds") or []:
        if not isinstance(row, dict):
            continue
        if "snr_db" not in row:
            rows.append([str(row.get("round")), str(row.get("added")), "-", "-", "-", "-", str(row.get("problem"))])
            continue
        rows.append(
            [
                str(row.get("round")),
                str(row.get("added") or "(plain int8)"),
                f"{_fmt(100 * (row.get('float_weight_fraction') or 0), '.1f')}%",
                _fmt(row.get("max_abs_err_of_peak")),
                _fmt(row.get("snr_db"), ".1f"),
                _fmt(row.get("cosine"), ".5f"),
                "passed" if row.get("passed") else "failed",
            ]
        )
    return rows


def keep_float_cost(record: dict) -> str:
    """Size and p50 of the mixed artifact against pure int8 and float, and how they were measured."""
    cost = record.get("cost")
    if not isinstance(cost, dict):
        return ""
    size, p50 = cost.get("size_bytes") or {}, cost.get("p50_ms") or {}
    text = (
        f"size {_size(size.get('mixed'))} vs {_size(size.get('int8'))} pure int8 and {_size(size.get('float'))} "
        f"float; p50 {_fmt(p50.get('mixed'))} ms vs {_fmt(p50.get('int8'))} ms pure int8 and "
        f"{_fmt(p50.get('float'))} ms float ({cost.get('measured')})"
    )
    checked = record.get("validation_p50_ms")
    if isinstance(checked, dict):
        text += f"; this validation: p50 {_fmt(checked.get('mixed'))} ms vs {_fmt(checked.get('float'))} ms float"
    return text


def divergence_line(divergence: dict) -> str:
    """One line naming the first diverging layer (or why there is none)."""
    if divergence.get("error") or (divergence.get("note") and not divergence.get("layers")):
        return f"first divergence not located: {divergence.get('error') or divergence.get('note')}"
    counts = divergence.get("counts") or {}
    tally = (
        f"{counts.get('by_name', 0)} layers paired by name, {counts.get('by_value', 0)} by value, "
        f"{counts.get('unpaired', 0)} unpaired"
    )
    first = divergence.get("first")
    if not first:
        return f"no diverging layer found ({tally}): the error arises outside the paired layers"
    fused = f" (fused with {', '.join(first.get('fused_with') or [])})" if first.get("fused_with") else ""
    return (
        f"first divergence at {first.get('source_layer')}{fused} → {first.get('artifact_tensor')} "
        f"({first.get('op_type')}): max abs err {_fmt(first.get('max_abs_err'))}, cosine "
        f"{_fmt(first.get('cosine'), '.4f')}; {tally}"
    )


def divergence_svg(divergence: dict, width: int = 560, height: int = 150) -> str:
    """Error relative to each layer's magnitude against depth (log scale), the first divergence marked."""
    layers = [layer for layer in divergence.get("layers") or [] if isinstance(layer, dict)]
    if not layers:
        return ""
    left, right, top, bottom = 48, width - 12, 12, height - 28
    depths = [float(layer.get("depth", i)) for i, layer in enumerate(layers)]
    errs = [max(float(layer.get("rel_err", 0) or 0), 1e-9) for layer in layers]
    lo, hi = math.floor(math.log10(min(errs))), math.ceil(math.log10(max(max(errs), 1e-8) * 1.01))
    span, dmax = max(hi - lo, 1), max(max(depths), 1.0)
    x = lambda d: left + (right - left) * d / dmax  # noqa: E731
    y = lambda e: bottom - (bottom - top) * (math.log10(e) - lo) / span  # noqa: E731
    points = " ".join(f"{x(d):.1f},{y(e):.1f}" for d, e in zip(depths, errs, strict=True))
    parts = [
        f'<svg class="plot divergence" role="img" aria-label="error against depth" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f'<polyline fill="none" stroke="{_INK}" stroke-width="1.5" points="{points}"/>',
    ]
    for tick in range(lo, hi + 1):
        parts.append(_text(left - 4, y(10.0**tick) + 4, f"1e{tick}", "end", 10, _MUTED))
    parts.append(
        _text((left + right) / 2, height - 6, "layer depth (source order); y: max abs err / peak", "middle", 10, _MUTED)
    )
    first = divergence.get("first") or {}
    for d, e, layer in zip(depths, errs, layers, strict=True):
        if layer.get("source_layer") == first.get("source_layer") and d == float(first.get("depth", -1)):
            parts.append(f'<circle cx="{x(d):.1f}" cy="{y(e):.1f}" r="5" fill="#c62828"/>')
            parts.append(_text(x(d) + 8, y(e) + 4, str(first.get("source_layer")), "start", 11, "#c62828"))
    return "".join(parts) + "</svg>"


def delegation_line(delegation: dict) -> str:
    """``XnnpackBackend took 41 of 61 ops (67%) in 8 subgraphs; portable kernels: aten.mean.dim x1``."""
    total, taken = delegation.get("ops_total") or 0, delegation.get("ops_delegated") or 0
    portable = delegation.get("portable_ops")
    portable = portable if isinstance(portable, dict) else {}
    left = ", ".join(f"{op} x{n}" for op, n in portable.items()) or "none"
    if not delegation.get("subgraphs"):
        return f"no delegate: all {total} ops on portable kernels"
    backends = delegation.get("backends")
    backends = backends if isinstance(backends, list) else []
    share = (
        f" ({100 * taken / total:.0f}%)" if all(isinstance(v, (int, float)) for v in (taken, total)) and total else ""
    )
    return (
        f"{'/'.join(map(str, backends)) or 'a delegate'} took {taken} of {total} ops{share} in "
        f"{delegation.get('subgraphs')} subgraphs; portable kernels: {left}"
    )


def isa_summary(t) -> str:
    """``avx512-vnni native: passed; avx2 emulated (qemu-x86_64 -cpu Haswell): passed on 8 samples
    (float control on 1, max abs err 1e-06)``: how much an emulated proof covered is part of it."""
    parts = []
    for check in t.isa_checks or []:
        verdict = (
            ("passed" if check.get("passed") else "FAILED")
            if check.get("checked")
            else f"not checked ({check.get('reason', 'no reason recorded')})"
        )
        if check.get("checked") and check.get("parity"):
            verdict += f" on {check['parity'].get('samples')} samples"
            if check.get("control_samples"):
                verdict += (
                    f" (float control on {check['control_samples']}, "
                    f"max abs err {check.get('control_max_abs_err', 0.0):.2g})"
                )
        parts.append(f"{check.get('isa_class')} {check.get('how')}: {verdict}")
    return "; ".join(parts)


def _cpu_line(report: Report) -> str:
    """The CPU that proved the report (reports written before the CPU was recorded say so)."""
    from .cpu import describe

    cpu = report.environment.get("cpu")
    return describe(cpu) if cpu else "an unrecorded CPU"


def _timings_html(report: Report) -> str:
    rows = _timing_rows(report)
    if not rows:
        return ""
    return (
        f'<section id="timings"><details><summary>Where the time went ({escape(_run_line(report))})</summary>'
        + _html_table(TIMING_HEADER, rows)
        + "</details></section>"
    )


def _environment_html(report: Report) -> str:
    env = report.environment
    rows = [
        ["python", str(env.get("python"))],
        ["platform", str(env.get("platform"))],
        ["cpu", _cpu_line(report)],
        ["threads", str(env.get("threads"))],
        ["inputs sha256", str(report.inputs.get("sha256"))],
    ]
    rows += [[name, str(version)] for name, version in (env.get("packages") or {}).items()]
    return (
        '<section id="environment"><details><summary>Environment and package versions</summary>'
        + _html_table(["", ""], rows)
        + "</details></section>"
    )


def to_html(report: Report, gate=None) -> str:
    """A self-contained HTML page: verdict, gate, summary table, latency and per-output error plots."""
    passed, code = overall(report, gate)
    verdict = "PASSED" if passed else "FAILED"
    src, inputs = report.source, report.inputs
    shapes = ", ".join(f"{i['name']} {'x'.join(map(str, i['shape']))} {i['dtype']}" for i in src.get("inputs", []))
    reasons = report.failures() + ([gate.summary()] if gate is not None and not gate.passed else [])
    failures = "".join(f"<li>{escape(f)}</li>" for f in reasons)
    body = [
        f"<h1>ondevice report: {verdict}</h1>",
        f'<div class="verdict {"pass" if passed else "fail"}"><b>{verdict}</b> (exit {code})'
        + (f"<ul>{failures}</ul>" if failures else "")
        + "</div>",
        f"<p>Source <code>{escape(str(src.get('spec')))}</code> ({escape(str(src.get('framework')))}), inputs "
        f"{escape(shapes)}; {escape(str(inputs.get('samples')))} {escape(str(inputs.get('kind')))} samples, seed "
        f"{escape(str(inputs.get('seed')))}, {escape(str(report.environment.get('threads')))} threads; measured on "
        f"{escape(_cpu_line(report))}.</p>",
        _gate_html(gate),
        '<section id="summary"><h2>Summary</h2>'
        + _html_table(SUMMARY_HEADER, _summary_rows(report), range(5, 12), "summary", status_col=1)
        + "</section>",
        f'<section id="latency"><h2>Latency</h2>{latency_svg(report)}</section>',
        _compatibility_html(report),
        '<section id="targets"><h2>Parity per output</h2>'
        + "".join(_target_html(t) for t in report.targets)
        + "</section>",
        _timings_html(report),
        _environment_html(report),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ondevice report: {verdict}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


# ---- one entry point for every format --------------------------------------------------------------

RENDERERS = {"md": to_markdown, "html": to_html, "junit": to_junit}


def render(report: Report, fmt: str, gate: Verdict | None = None) -> str:
    """The report in one of RENDERERS' formats, with the gate's section when there is a verdict."""
    return RENDERERS[fmt](report, gate)
