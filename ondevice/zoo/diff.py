"""A zoo run against a previous scorecard: what started or stopped failing, got slower, drifted or grew.

The verdict is the release gate's regression logic (gate.run_gate, rules ``regression.*``), applied per
model to the numbers both scorecards hold, with that model's ``--policy`` [regression] thresholds (or
the gate's defaults): a latency change counts only when it exceeds ``latency_pct`` and each p50 lies
outside the other run's 95% interval. Speed buckets (1.1/1.2/1.3/1.5/2/5/10x) describe every change,
counted or not.
"""

from __future__ import annotations

from html import escape

BUCKETS = (1.1, 1.2, 1.3, 1.5, 2.0, 5.0, 10.0)
LATENCY_HEADER = ["model", "target", "precision", "p50 now ms", "p50 before ms", "change", "outside both CIs"]


def compare(entries: list, baseline: dict, policies: dict) -> dict:
    """The regression view of ``entries`` (this run's models) against ``baseline`` (a loaded scorecard)."""
    before = {m["name"]: m for m in baseline["models"]}
    view: dict = {
        "zoo": baseline.get("zoo"),
        "started_failing": [],
        "stopped_failing": [],
        "latency": [],
        "failures": [],
        "notes": [],
        "new_models": [],
        "missing_models": [],
    }
    for model in entries:
        old = before.get(model["name"])
        if old is None:
            view["new_models"].append(model["name"])
            continue
        _model_status(model, old, view)
        if model["targets"] and old["targets"]:
            _targets(model, old, policies.get(model["name"]), view)
    names = {m["name"] for m in entries}
    for old in baseline["models"]:
        if old["name"] not in names and old["exit_code"] == 0:
            view["missing_models"].append(old["name"])
            view["failures"].append(
                {
                    "model": old["name"],
                    "rule": "regression.missing_model",
                    "exit_code": 1,
                    "line": f"regression.missing_model {old['name']}: passed in the baseline and is not in this run",
                }
            )
    view["exit_code"] = max((f["exit_code"] for f in view["failures"]), default=0)
    view["passed"] = view["exit_code"] == 0
    return view


def _model_status(model: dict, old: dict, view: dict) -> None:
    was_ok, is_ok = old["exit_code"] == 0, model["exit_code"] == 0
    change = {"model": model["name"], "target": None, "before": old["state"], "now": model["state"]}
    if was_ok and not is_ok:
        view["started_failing"].append(change)
    elif is_ok and not was_ok:
        view["stopped_failing"].append(change)


def _targets(model: dict, old: dict, policy, view: dict) -> None:
    from ..gate import Policy, run_gate

    now, then = _report(model), _report(old)
    result = run_gate(now, policy or Policy(), then)
    for failure in result.failures:
        if failure.rule.startswith("regression."):
            view["failures"].append(
                {"model": model["name"], **failure.to_json(), "line": f"{model['name']}: {failure.line()}"}
            )
    view["notes"] += [f"{model['name']}: {note}" for note in result.notes]
    previous = {(t["target"], t["precision"]): t for t in old["targets"]}
    for t in model["targets"]:
        p = previous.get((t["target"], t["precision"]))
        if p is None:
            continue
        change = {
            "model": model["name"],
            "target": t["target"],
            "precision": t["precision"],
            "before": p["status"],
            "now": t["status"],
        }
        if p["status"] == "passed" and t["status"] != "passed" and model["exit_code"] != 0:
            view["started_failing"].append(change)
        elif t["status"] == "passed" and p["status"] != "passed":
            view["stopped_failing"].append(change)
        if t.get("p50_ms") and p.get("p50_ms"):
            view["latency"].append(_latency_change(model["name"], t, p))


def _latency_change(name: str, t: dict, p: dict) -> dict:
    from ..gate import p50_ci

    now, before = t["p50_ms"], p["p50_ms"]
    (now_lo, now_hi), (old_lo, old_hi) = p50_ci(t), p50_ci(p)
    # The gate's test, both ways: each median outside the other run's interval.
    outside = (now > old_hi and before < now_lo) or (now < old_lo and before > now_hi)
    return {
        "model": name,
        "target": t["target"],
        "precision": t["precision"],
        "p50_ms": now,
        "baseline_p50_ms": before,
        "ratio": now / before,
        "bucket": bucket(now / before),
        "outside_ci": outside,
    }


def bucket(ratio: float) -> str:
    """``1.5x slower``, ``2x faster`` or ``unchanged`` (under 1.1x either way) for now/before p50."""
    if not ratio or ratio <= 0:
        return "unchanged"
    slower = ratio >= 1
    factor = ratio if slower else 1 / ratio
    reached = [b for b in BUCKETS if factor >= b]
    if not reached:
        return "unchanged"
    return f">= {reached[-1]:g}x {'slower' if slower else 'faster'}"


def _report(model: dict):
    """A Report holding what the scorecard kept of a model: enough for the gate's regression rules."""
    from ..report import Report, TargetResult

    targets = [
        TargetResult(
            t["target"],
            t["status"],
            None if t["precision"] == "fp32" else t["precision"],
            error=t.get("error"),
            strategy=t.get("strategy"),
            size_bytes=t.get("size_bytes"),
            parity={"outputs": t.get("outputs") or []},
            latency={"p50_ms": t["p50_ms"], "p50_ci95_ms": t.get("p50_ci95_ms")} if t.get("p50_ms") else None,
        )
        for t in model["targets"]
    ]
    environment = {"threads": model.get("threads"), "cpu": {"isa_class": model.get("isa_class")}}
    return Report(
        {}, environment, {"sha256": model.get("inputs_sha256")}, targets, bool(model.get("allow_inconclusive"))
    )


def _change_rows(changes: list) -> list:
    return [
        [c["model"], c.get("target") or "(model)", c.get("precision") or "-", c["before"], c["now"]] for c in changes
    ]


def _latency_rows(view: dict) -> list:
    return [
        [
            c["model"],
            c["target"],
            c["precision"],
            f"{c['p50_ms']:.3g}",
            f"{c['baseline_p50_ms']:.3g}",
            f"{c['bucket']} ({c['ratio']:.2f}x)",
            "yes" if c["outside_ci"] else "no (noise)",
        ]
        for c in view["latency"]
    ]


CHANGE_HEADER = ["model", "target", "precision", "before", "now"]


def markdown_lines(view: dict) -> list:
    """The baseline section of scorecard.md."""
    from ..render import _md_cell, _md_table

    lines = [
        f"### Against the baseline: {'no regressions' if view['passed'] else 'REGRESSED'} (exit {view['exit_code']})",
        "",
    ]
    for title, key in (("Started failing", "started_failing"), ("Stopped failing", "stopped_failing")):
        if view[key]:
            lines += [f"**{title}**", "", *_md_table(CHANGE_HEADER, _change_rows(view[key])), ""]
    if view["latency"]:
        lines += ["**Latency (p50)**", "", *_md_table(LATENCY_HEADER, _latency_rows(view)), ""]
    lines += [f"- FAIL {_md_cell(f['line'])}" for f in view["failures"]]
    lines += [f"- note: {_md_cell(n)}" for n in view["notes"]]
    lines += [f"- new model (no baseline): {_md_cell(n)}" for n in view["new_models"]]
    return lines


def html_section(view: dict) -> str:
    """The baseline section of scorecard.html."""
    from ..render import _html_table

    parts = [
        f'<section id="baseline"><h2>Against the baseline: {"no regressions" if view["passed"] else "REGRESSED"}'
        f" (exit {view['exit_code']})</h2>"
    ]
    for title, key in (("Started failing", "started_failing"), ("Stopped failing", "stopped_failing")):
        if view[key]:
            parts.append(f"<h3>{title}</h3>" + _html_table(CHANGE_HEADER, _change_rows(view[key])))
    if view["latency"]:
        parts.append("<h3>Latency (p50)</h3>" + _html_table(LATENCY_HEADER, _latency_rows(view), (3, 4)))
    items = [f"FAIL {f['line']}" for f in view["failures"]] + [f"note: {n}" for n in view["notes"]]
    if items:
        parts.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
    return "".join(parts) + "</section>"
