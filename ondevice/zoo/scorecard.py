"""The zoo's scorecard: the model x target x precision matrix, and its diff to a previous scorecard.

``scorecard.json`` holds, per model, its outcome (state, exit code, verdict) and per target the status,
winning strategy, worst error, p50 with its 95% interval and size, plus what the regression view needs,
so a scorecard alone is a baseline. The diff to ``--baseline`` is the release gate's regression logic
(gate.run_gate against each model's previous numbers: newly failing targets, latency judged against both
runs' confidence intervals, parity drift, size growth) with the model's own ``--policy`` thresholds;
latency changes are also shown in speed buckets (1.1/1.2/1.3/1.5/2/5/10x).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from ..core.errors import BadInputError

SCHEMA_VERSION = 1
KIND = "ondevice-zoo-scorecard"
FILES = ("scorecard.json", "scorecard.md", "scorecard.html")


def latency_policy(workers: int, executor: str) -> str:
    """The sentence every scorecard carries: how latency was protected from the other models' work."""
    if workers <= 1:
        return "one model at a time: no other model ran while latency was measured"
    node = "on its node" if executor == "ray" else "on this machine"
    return (
        f"{workers} models at a time; each latency measurement (source and artifacts) ran alone {node}: "
        "under the run's timing lock, with every other model's processes stopped (SIGSTOP) until it ended"
    )


def model_entry(name: str, source: str, outcome: dict, out: Path) -> dict:
    """One model's scorecard entry from its outcome and, when it wrote one, its report.json."""
    entry: dict = {
        "name": name,
        "source": source,
        **{k: outcome.get(k) for k in ("state", "exit_code", "verdict", "seconds", "peak_rss_mb", "cache")},
        "resumed": bool(outcome.get("resumed")),
        "log": f"{name}/zoo.log",
        "report": None,
        "targets": [],
    }
    path = out / name / "report.json"
    if outcome.get("state") not in ("crashed", "timeout", "memory") and path.is_file():
        from ..report import load_report

        try:
            report = load_report(path)
        except BadInputError:
            return entry
        hit = bool((outcome.get("cache") or {}).get("hit"))
        entry.update(
            report=f"{name}/report.json",
            inputs_sha256=report.inputs.get("sha256"),
            threads=report.environment.get("threads"),
            isa_class=(report.environment.get("cpu") or {}).get("isa_class"),
            allow_inconclusive=report.allow_inconclusive,
            targets=[_target_entry(t, hit) for t in report.targets],
        )
    return entry


def _target_entry(t, from_cache: bool) -> dict:
    outputs = (t.parity or {}).get("outputs") or []
    latency = t.latency or {}
    return {
        "target": t.target,
        "precision": t.quantize or "fp32",
        "status": t.status,
        "error": t.error,
        "strategy": t.strategy,
        "max_abs_err": max((o["max_abs_err"] for o in outputs), default=None),
        "p50_ms": latency.get("p50_ms"),
        "p50_ci95_ms": latency.get("p50_ci95_ms"),
        "size_bytes": t.size_bytes,
        "from_cache": from_cache and t.artifact is not None,
        "outputs": [
            {k: o.get(k) for k in ("name", "max_abs_err", "snr_db", "cosine", "atol", "passed")} for o in outputs
        ],
    }


def build(zoo: str, entries: list, run: dict, environment: dict, baseline=None, policies=None) -> dict:
    """The scorecard; ``baseline`` (a loaded scorecard) adds the regression view, judged with each model's
    gate policy in ``policies`` (name -> Policy), which can fail the run."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["state"]] = counts.get(entry["state"], 0) + 1
    card = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "zoo": zoo,
        **run,
        "latency_policy": latency_policy(run["workers"], run["executor"]),
        "environment": environment,
        "counts": counts,
        "models": entries,
    }
    code = max((e["exit_code"] for e in entries), default=2)
    if baseline is not None:
        from .diff import compare

        card["baseline"] = compare(entries, baseline, policies or {})
        code = max(code, card["baseline"]["exit_code"])
    card["exit_code"], card["passed"] = code, code == 0
    return card


def load(path) -> dict:
    """A scorecard.json written by a zoo run (exit 2 when it is not one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"baseline scorecard not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read baseline scorecard {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND or not isinstance(data.get("models"), list):
        raise BadInputError(f"{path} is not a zoo scorecard.json (give the scorecard.json of a previous zoo run)")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BadInputError(
            f"baseline {path} has schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    return data


def verdict(card: dict, path) -> str:
    """The zoo command's last line."""
    counts = ", ".join(f"{n} {state}" for state, n in sorted(card["counts"].items()))
    head = f"{len(card['models'])} models: {counts}"
    if card["passed"]:
        return f"PASSED ({head}) - scorecard: {path}"
    bad = [m for m in card["models"] if m["exit_code"]]
    named = "; ".join(f"{m['name']}: {m['state']}" for m in bad[:8])
    named += f"; +{len(bad) - 8} more" if len(bad) > 8 else ""
    regress = card.get("baseline") or {}
    extra = f"; baseline: {len(regress.get('failures', []))} regressions" if regress.get("failures") else ""
    return f"FAILED ({head}; {named}{extra}) - scorecard: {path}".replace("; ;", ";")


# ---- rendering ---------------------------------------------------------------------------------------

MATRIX_HEADER = [
    "model",
    "target",
    "precision",
    "status",
    "strategy",
    "max abs err",
    "p50 ms [95% CI]",
    "size",
    "cache",
]


def _fmt(value, spec=".3g") -> str:
    return "-" if value is None else format(value, spec)


def _size(n) -> str:
    return "-" if not n else f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"


def matrix_rows(card: dict) -> list:
    """One row per model x target x precision; a model without targets (crash, hang) is one row."""
    rows = []
    for m in card["models"]:
        if not m["targets"]:
            rows.append([m["name"], "-", "-", m["state"], "-", "-", "-", "-", "-"])
        for t in m["targets"]:
            ci = t.get("p50_ci95_ms")
            p50 = _fmt(t.get("p50_ms")) + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else "")
            rows.append(
                [
                    m["name"],
                    t["target"],
                    t["precision"],
                    t["status"],
                    t.get("strategy") or "-",
                    _fmt(t.get("max_abs_err")),
                    p50,
                    _size(t.get("size_bytes")),
                    "hit" if t.get("from_cache") else "-",
                ]
            )
    return rows


def _problems(card: dict) -> list:
    return [(m["name"], m["state"], m["verdict"] or "") for m in card["models"] if m["exit_code"]]


def to_markdown(card: dict) -> str:
    """The scorecard for a pull request or a release note."""
    from ..render import _md_cell, _md_table

    lines = [
        f"## ondevice zoo: {'PASSED' if card['passed'] else 'FAILED'} (exit {card['exit_code']})",
        "",
        _md_cell(
            f"{len(card['models'])} models from {card['zoo']}; "
            + ", ".join(f"{n} {s}" for s, n in sorted(card["counts"].items()))
            + f"; {card['executor']} executor, {card['workers']} workers, "
            + f"{card.get('wall_s', 0):.0f} s."
        ),
        "",
        f"Latency policy: {_md_cell(card['latency_policy'])}.",
        "",
    ]
    lines += _md_table(MATRIX_HEADER, matrix_rows(card))
    problems = _problems(card)
    if problems:
        lines += ["", "### Problems", *(f"- **{_md_cell(n)}** ({s}): {_md_cell(v)}" for n, s, v in problems)]
    if card.get("baseline"):
        from .diff import markdown_lines

        lines += ["", *markdown_lines(card["baseline"])]
    return "\n".join(lines) + "\n"


def to_html(card: dict) -> str:
    """A self-contained page: verdict, policy, matrix, problems, the baseline view."""
    from ..render import _CSS, _html_table

    word = "PASSED" if card["passed"] else "FAILED"
    body = [
        f"<h1>ondevice zoo: {word}</h1>",
        f'<div class="verdict {"pass" if card["passed"] else "fail"}"><b>{word}</b> (exit {card["exit_code"]}): '
        + escape(", ".join(f"{n} {s}" for s, n in sorted(card["counts"].items())))
        + "</div>",
        f"<p>{len(card['models'])} models from <code>{escape(card['zoo'])}</code>; {escape(card['executor'])} "
        f"executor, {card['workers']} workers. Latency policy: {escape(card['latency_policy'])}.</p>",
        '<section id="matrix"><h2>Models</h2>'
        + _html_table(MATRIX_HEADER, matrix_rows(card), (5, 6, 7), "summary", status_col=3)
        + "</section>",
    ]
    problems = _problems(card)
    if problems:
        body.append(
            '<section id="problems"><h2>Problems</h2><ul>'
            + "".join(f"<li><b>{escape(n)}</b> ({escape(s)}): {escape(v)}</li>" for n, s, v in problems)
            + "</ul></section>"
        )
    if card.get("baseline"):
        from .diff import html_section

        body.append(html_section(card["baseline"]))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ondevice zoo: {word}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write(card: dict, out: Path) -> Path:
    """scorecard.json, .md and .html in ``out``; returns the JSON's path."""
    from .._paths import write_text_atomic

    write_text_atomic(out / "scorecard.md", to_markdown(card))
    write_text_atomic(out / "scorecard.html", to_html(card))
    return write_text_atomic(out / "scorecard.json", json.dumps(card, indent=2) + "\n")
