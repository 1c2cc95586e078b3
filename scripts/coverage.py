"""Export every model family to every target through the real converters; write docs/coverage.md.

Each family runs ``ondevice.check`` in its own process (a converter crash costs one row, not the
run). PyTorch and Keras families come from tests/families.py; the ONNX route is measured on the
ONNX file each PyTorch family exported. The table is generated, never edited by hand. ``--to``
measures some targets only: their table then replaces its own marked section of the page (or is
added at its end), and the rest of the page stays as the last full run left it.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ondevice.core.vocab import DEFAULT_TARGETS, TARGETS

ROOT = Path(__file__).resolve().parent.parent


def _routes(framework: str, targets) -> list[str]:
    """The targets some strategy makes from ``framework`` (ExecuTorch is reached from PyTorch only)."""
    from ondevice.converters.registry import strategies_for

    return [t for t in targets if strategies_for(framework, t)]


def measure_one(family: str, out: Path, samples: int, every: bool, targets=TARGETS) -> dict:
    """check() one family (and, for PyTorch, its ONNX export as a source); rows as JSON-able dicts.

    With ``every``, each strategy of each route is also forced on its own (``strategy_rows``).
    """
    sys.path.insert(0, str(ROOT))
    import ondevice
    from tests.families import FAMILIES

    model, example = FAMILIES[family]()
    framework = family.split("_", 1)[0]
    sources = [(framework, model, example)]
    mine = _routes(framework, targets)
    rows = (
        _check_rows(
            framework,
            family,
            lambda: ondevice.check(model, example, targets=mine, out_dir=out / "source", samples=samples, runs=5),
            out / "source",
        )
        if mine
        else []
    )
    # The ONNX source is the file the PyTorch family exported: export one when ONNX itself is not measured.
    onnx_file = out / "source" / "model.onnx"
    if framework == "torch" and _routes("onnx", targets) and not onnx_file.exists():
        ondevice.export(model, example, targets=["onnx"], out_dir=out / "onnx_source")
        onnx_file = out / "onnx_source" / "model.onnx"
    if framework == "torch" and onnx_file.exists() and _routes("onnx", targets):
        sources.append(("onnx", str(onnx_file), None))
        rows += _check_rows(
            "onnx",
            family,
            lambda: ondevice.check(
                str(onnx_file), targets=_routes("onnx", targets), out_dir=out / "onnx", samples=samples, runs=5
            ),
            out / "onnx",
        )
    strategy_rows = (
        [row for kind, m, ex in sources for row in _every_strategy(kind, family, m, ex, out, samples, targets)]
        if every
        else []
    )
    return {"rows": rows, "strategy_rows": strategy_rows}


def _every_strategy(
    framework: str, family: str, model, example, out: Path, samples: int, targets=TARGETS
) -> list[dict]:
    """Each strategy of each route from ``framework``, forced alone: its error or why it failed."""
    import ondevice
    from ondevice.converters.registry import strategies_for

    rows = []
    for target in targets:
        for strategy in strategies_for(framework, target):
            started = time.perf_counter()
            report = ondevice.check(
                model,
                example,
                targets=[target],
                out_dir=out / "forced" / strategy.name,
                samples=samples,
                runs=1,
                strategy=strategy.name,
            )
            result = report.targets[0]
            outputs = (result.parity or {}).get("outputs", [])
            rows.append(
                {
                    "family": family.split("_", 1)[1],
                    "source": framework,
                    "target": target,
                    "strategy": strategy.name,
                    "status": result.status,
                    "max_abs_err": max((o["max_abs_err"] for o in outputs), default=None),
                    "error": result.error,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    return rows


def _check_rows(framework: str, family: str, run, out: Path) -> list[dict]:
    started = time.perf_counter()
    report = run()
    seconds = time.perf_counter() - started
    manifest = json.loads((out / "manifest.json").read_text())
    # Keyed by target and precision: the int8 entry of a target must not stand in for its float one.
    attempts = {(a["target"], a.get("quantize")): a["attempts"] for a in manifest["artifacts"] + manifest["failures"]}
    rows = []
    for result in report.targets:
        outputs = (result.parity or {}).get("outputs", [])
        rows.append(
            {
                "family": family.split("_", 1)[1],
                "source": framework,
                "target": result.target,
                "status": result.status,
                "strategy": result.strategy,
                "max_abs_err": max((o["max_abs_err"] for o in outputs), default=None),
                "error": result.error,
                "attempts": attempts.get(result.target, []),
                "seconds": round(seconds, 1),
            }
        )
    return rows


def run_all(
    families: list[str], samples: int, timeout: int, every: bool, targets=TARGETS
) -> tuple[list[dict], list[dict]]:
    """One subprocess per family; a crash or timeout becomes an error row for each target."""
    rows, strategy_rows = [], []
    for family in families:
        with tempfile.TemporaryDirectory(prefix=f"coverage-{family}-") as tmp:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                family,
                "--out",
                tmp,
                "--samples",
                str(samples),
                "--to",
                ",".join(targets),
            ]
            cmd += ["--every-strategy"] if every else []
            print(f"{family} ...", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
                payload = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
                result = json.loads(payload) if payload.startswith("{") else {}
                found = result.get("rows")
                strategy_rows += result.get("strategy_rows", [])
                reason = None if found else (proc.stderr.strip().splitlines() or ["no output"])[-1]
            except subprocess.TimeoutExpired:
                found, reason = None, f"timed out after {timeout} s"
        rows += found or [
            {
                "family": family.split("_", 1)[1],
                "source": family.split("_", 1)[0],
                "target": t,
                "status": "error",
                "strategy": None,
                "max_abs_err": None,
                "error": reason,
                "attempts": [],
                "seconds": None,
            }
            for t in _routes(family.split("_", 1)[0], targets)
        ]
        for row in found or []:
            print(
                f"  {row['source']:5} {row['target']:8} {row['status']:16} {row['strategy']} {row['max_abs_err']}",
                file=sys.stderr,
                flush=True,
            )
    return rows, strategy_rows


def _versions() -> dict:
    from ondevice.core.lazy import package_versions

    return package_versions(
        "torch",
        "tensorflow",
        "keras",
        "onnx",
        "onnxruntime",
        "openvino",
        "onnx2tf",
        "tf2onnx",
        "litert-torch",
        "ai-edge-litert",
        "onnxsim",
        "executorch",
    )


def _commit() -> str:
    """The commit measured: git's HEAD here, else $ONDEVICE_COMMIT (a run from an exported tree)."""
    import os

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    return os.environ.get("ONDEVICE_COMMIT", "unknown")


def _fmt_err(value) -> str:
    return "—" if value is None else f"{value:.1e}"


def render_strategies(rows: list[dict]) -> list[str]:
    """Every strategy forced alone: one table per route, a column per family."""
    lines = [
        "",
        "## Every strategy forced alone",
        "",
        "Each cell is one `ondevice.check --strategy NAME` of that family: the max abs error when the "
        "artifact passed parity, else why it did not (reasons in full below the tables).",
        "",
    ]
    notes = []
    routes = list(dict.fromkeys((r["source"], r["target"]) for r in rows))
    for source, target in routes:
        mine = [r for r in rows if (r["source"], r["target"]) == (source, target)]
        strategies = list(dict.fromkeys(r["strategy"] for r in mine))
        families = list(dict.fromkeys(r["family"] for r in mine))
        lines += [
            f"### {source} → {target}",
            "",
            "| strategy | " + " | ".join(families) + " |",
            "|---|" + "---|" * len(families),
        ]
        for strategy in strategies:
            cells = []
            for family in families:
                r = next((x for x in mine if x["strategy"] == strategy and x["family"] == family), None)
                if r is None:
                    cells.append("")
                elif r["status"] == "passed":
                    cells.append(_fmt_err(r["max_abs_err"]))
                else:
                    notes.append(f"- {family}, `{strategy}`: {r['status']}: {(r['error'] or '')[:400]}")
                    cells.append(f"{r['status']} [{len(notes)}]")
            lines.append(f"| `{strategy}` | " + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines += ["Reasons:", ""] + [f"{i}. {n[2:]}" for i, n in enumerate(notes, 1)]
    return lines


def render(
    rows: list[dict],
    command: str,
    samples: int,
    strategy_rows: list[dict] = (),
    title: str = "Coverage: every model family through every route",
) -> str:
    """The Markdown page: the table, then every rejected strategy with its reason."""
    passed = sum(r["status"] == "passed" for r in rows)
    lines = [
        f"# {title}",
        "",
        f"Generated by `{command}` at commit {_commit()} on {time.strftime('%Y-%m-%d')} "
        f"(Python {platform.python_version()}, "
        f"{platform.machine()}, CPU); do not edit by hand. Each row is one `ondevice.check` at float32 "
        f"with {samples} seeded samples; the error is the largest max-abs error over the outputs. "
        "Models: `tests/families.py`; the ONNX rows convert the ONNX file the PyTorch family exported. "
        "Published architectures (every `keras.applications` model, the Hugging Face families) at float32 "
        "and int8: [coverage-published.md](coverage-published.md).",
        "",
        f"**{passed} of {len(rows)} passed.**",
        "",
        "| family | source | target | status | strategy | max abs err |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['source']} | {r['target']} | {r['status']} | "
            f"{r['strategy'] or '—'} | {_fmt_err(r['max_abs_err'])} |"
        )
    lines += ["", "## Strategies tried before the winner, and why they were rejected", ""]
    rejected = [(r, a) for r in rows for a in r["attempts"] if a["status"] == "rejected"]
    if not rejected:
        lines.append("None: the first strategy of every route won.")
    for r, a in rejected:
        lines.append(f"- {r['family']} ({r['source']} → {r['target']}): `{a['strategy']}` — {a['reason']}")
    failed = [r for r in rows if r["status"] != "passed"]
    if failed:
        lines += ["", "## Not passed", ""]
        lines += [f"- {r['family']} ({r['source']} → {r['target']}): {r['error']}" for r in failed]
    if strategy_rows:
        lines += render_strategies(list(strategy_rows))
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in _versions().items()), ""]
    return "\n".join(lines)


def _targets(text: str) -> tuple:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    return names


def merge_section(page: str, key: str, block: str) -> str:
    """``page`` with its section for ``key`` (between marker comments) replaced by ``block``, or added at the end."""
    start, end = f"<!-- coverage {key} -->", f"<!-- /coverage {key} -->"
    # One heading level down: the section sits under the page's own title.
    section = f"{start}\n" + re.sub(r"^(#+) ", r"#\1 ", block.strip(), flags=re.M) + f"\n{end}\n"
    found = re.search(re.escape(start) + r".*?" + re.escape(end) + r"\n?", page, flags=re.S)
    if found:
        return page[: found.start()] + section + page[found.end() :]
    return page.rstrip("\n") + "\n\n" + section


# ---- the published set (tests/published.py): resumable, float and int8 ------------------------

PUBLISHED_TARGETS = DEFAULT_TARGETS
PUBLISHED_STATE = ROOT / "benchmarks" / "published-state.json"


def measure_published(name: str, out: Path, samples: int, targets=PUBLISHED_TARGETS) -> dict:
    """check() one published model at float32 and int8 on ``targets``; one row per (target, precision)."""
    sys.path.insert(0, str(ROOT))
    import ondevice
    from ondevice.core.lazy import quiet_environment
    from ondevice.core.quiet import quiet

    quiet_environment()  # before transformers and Keras load TensorFlow, which logs on import
    from tests.published import published

    with quiet():
        model, example = published()[name]()
    started = time.perf_counter()
    report = ondevice.check(
        model, example, targets=list(targets), out_dir=out, samples=samples, runs=3, quantize="int8"
    )
    seconds = round(time.perf_counter() - started, 1)
    manifest = json.loads((out / "manifest.json").read_text())
    # Keyed by target and precision: the int8 entry of a target must not stand in for its float one.
    attempts = {(a["target"], a.get("quantize")): a["attempts"] for a in manifest["artifacts"] + manifest["failures"]}
    rows = []
    for result in report.targets:
        outputs = (result.parity or {}).get("outputs", [])
        rows.append(
            {
                "model": name,
                "target": result.target,
                "precision": result.quantize or "fp32",
                "status": result.status,
                "strategy": result.strategy,
                "max_abs_err": max((o["max_abs_err"] for o in outputs), default=None),
                "error": result.error,
                "attempts": [] if result.quantize else attempts.get((result.target, None), []),
            }
        )
    return {"rows": rows, "seconds": seconds}


def _published_child(name: str, samples: int, timeout: int) -> dict:
    """One published model in its own process; a crash or timeout is an error row per target and precision."""
    with tempfile.TemporaryDirectory(prefix=f"published-{name}-") as tmp:
        cmd = [sys.executable, __file__, "--set", "published", "--one", name, "--out", tmp, "--samples", str(samples)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
            lines = proc.stdout.strip().splitlines()
            if lines and lines[-1].startswith("{"):
                return json.loads(lines[-1])
            reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}, no output"])[-1][:300]
            if proc.returncode < 0:  # a signal: the last stderr line is whatever the model printed before it
                reason = f"killed by {signal.Signals(-proc.returncode).name} (SIGKILL: often the kernel's OOM killer)"
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout} s"
    rows = [
        {"model": name, "target": t, "precision": p, "status": "error", "strategy": None, "max_abs_err": None}
        | {"error": reason, "attempts": []}
        for t in PUBLISHED_TARGETS
        for p in ("fp32", "int8")
    ]
    return {"rows": rows, "seconds": None}


def run_published(names: list[str], samples: int, timeout: int, state_path: Path, budget_s: float | None) -> dict:
    """Run the models the state file lacks, one process each, saving the state after every model.

    A rerun skips what is done; ``budget_s`` stops starting new models once that much time has passed.
    """
    state = json.loads(state_path.read_text()) if state_path.exists() else {"models": {}}
    started = time.perf_counter()
    for name in names:
        if name in state["models"]:
            continue
        if budget_s is not None and time.perf_counter() - started > budget_s:
            print(f"budget spent: {name} and later not run", file=sys.stderr, flush=True)
            break
        print(f"{name} ...", file=sys.stderr, flush=True)
        result = _published_child(name, samples, timeout)
        state["models"][name] = {**result, "commit": _commit(), "date": time.strftime("%Y-%m-%d")}
        state_path.write_text(json.dumps(state, indent=1) + "\n")
        for row in result["rows"]:
            print(f"  {row['target']:8} {row['precision']:5} {row['status']:16} {row['strategy']}", file=sys.stderr)
    return state


def _cell(row: dict | None, notes: list[str]) -> str:
    """A table cell: the winning strategy and its error, else the status and a numbered reason."""
    if row is None:
        return "—"
    if row["status"] == "passed":
        return f"`{row['strategy']}` {_fmt_err(row['max_abs_err'])}"
    notes.append(f"{row['model']} → {row['target']} {row['precision']}: {row['status']}: {(row['error'] or '')[:400]}")
    return f"{row['status']} [{len(notes)}]"


def _published_table(rows: list[dict], models: list[str], precision: str, notes: list[str]) -> list[str]:
    mine = {(r["model"], r["target"]): r for r in rows if r["precision"] == precision}
    passed = {t: sum(mine.get((m, t), {}).get("status") == "passed" for m in models) for t in PUBLISHED_TARGETS}
    ran = {t: sum((m, t) in mine for m in models) for t in PUBLISHED_TARGETS}
    lines = [
        f"**{precision}:** " + ", ".join(f"{t} {passed[t]}/{ran[t]}" for t in PUBLISHED_TARGETS) + " passed.",
        "",
        "| model | " + " | ".join(PUBLISHED_TARGETS) + " |",
        "|---|" + "---|" * len(PUBLISHED_TARGETS),
    ]
    for model in models:
        cells = [_cell(mine.get((model, t)), notes) for t in PUBLISHED_TARGETS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def render_published(state: dict, names: list[str], samples: int, state_path: Path = PUBLISHED_STATE) -> str:
    """docs/coverage-published.md: which models ran, float and int8 tables, every failure's reason."""
    done = [n for n in names if n in state["models"]]
    missing = [n for n in names if n not in state["models"]]
    rows = [row for n in done for row in state["models"][n]["rows"]]
    commits = sorted({state["models"][n]["commit"] for n in done})
    notes: list[str] = []
    lines = [
        "# Coverage: published architectures",
        "",
        f"Generated by `scripts/coverage --set published` from {_shown(state_path)} "
        f"(commit{'s' if len(commits) > 1 else ''} {', '.join(commits) or '—'}; Python {platform.python_version()}, "
        f"{platform.machine()}, CPU); do not edit by hand. Models: `tests/published.py`, built from "
        "`keras.applications` and `transformers` with random weights, nothing downloaded. Each model is one "
        f"`ondevice.check --quantize int8` with {samples} seeded samples; a cell is the winning strategy and the "
        "largest max-abs error over the outputs, or the status and its reason below.",
        "",
        f"**{len(done)} of {len(names)} models run.** "
        + (f"Not yet run: {', '.join(m.split('_', 1)[1] for m in missing)}." if missing else "All models run."),
        "",
        "## float32",
        "",
        *_published_table(rows, done, "fp32", notes),
        "",
        "## int8",
        "",
        *_published_table(rows, done, "int8", notes),
        "",
    ]
    lines += ["## Reasons", ""] + ([f"{i}. {n}" for i, n in enumerate(notes, 1)] or ["None: every cell passed."])
    rejected = [(r, a) for r in rows for a in r["attempts"] if a["status"] == "rejected"]
    lines += ["", "## Strategies tried before the winner, and why they were rejected", ""]
    lines += [f"- {r['model']} → {r['target']}: `{a['strategy']}` — {a['reason']}" for r, a in rejected] or ["None."]
    lines += ["", "## Versions", "", ", ".join(f"{k} {v}" for k, v in _versions().items()), ""]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    path = path.absolute()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main_published(args) -> int:
    """``--set published``: run what the state file lacks (all, or the named models) and write the page."""
    sys.path.insert(0, str(ROOT))
    from ondevice.core.lazy import quiet_environment

    quiet_environment()  # listing keras.applications imports TensorFlow, which logs on import
    from tests.published import published

    names = list(published())
    unknown = [m for m in args.families if m not in names]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {', '.join(names)}")
    state_path = Path(args.state)
    budget = args.budget_min * 60 if args.budget_min else None
    if args.no_run:
        state = json.loads(state_path.read_text()) if state_path.exists() else {"models": {}}
    else:
        state = run_published(args.families or names, args.samples, args.timeout, state_path, budget)
    output = Path(args.output or ROOT / "docs" / "coverage-published.md")
    output.write_text(render_published(state, names, args.samples, state_path))
    rows = [row for entry in state["models"].values() for row in entry["rows"]]
    print(f"wrote {output}: {sum(r['status'] == 'passed' for r in rows)} of {len(rows)} cells passed", file=sys.stderr)
    return 0 if all(r["status"] == "passed" for r in rows) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "families", nargs="*", help="family names from tests/families.py, or models of --set published (default: all)"
    )
    parser.add_argument(
        "--to",
        type=_targets,
        default=TARGETS,
        help=f"comma-separated targets to measure (default: {','.join(TARGETS)}); a subset "
        "replaces its own section of the page",
    )
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per family")
    parser.add_argument(
        "-o", "--output", help="the page to write (default: docs/coverage.md, or docs/coverage-published.md)"
    )
    parser.add_argument(
        "--set",
        choices=("families", "published"),
        default="families",
        help="families: tests/families.py (default); published: tests/published.py, float and int8, resumable",
    )
    parser.add_argument(
        "--state", default=str(PUBLISHED_STATE), help="--set published: the JSON results kept between runs"
    )
    parser.add_argument("--budget-min", type=float, help="--set published: start no new model after this many minutes")
    parser.add_argument(
        "--no-run", action="store_true", help="--set published: write the page from the state file, run nothing"
    )
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument(
        "--every-strategy",
        action="store_true",
        help="also force each strategy of each route alone (slow: every converter runs)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.set == "published" and args.one:
        print(json.dumps(measure_published(args.one, Path(args.out), args.samples)))
        return 0
    if args.set == "published":
        return main_published(args)
    args.output = args.output or str(ROOT / "docs" / "coverage.md")
    if args.one:
        print(json.dumps(measure_one(args.one, Path(args.out), args.samples, args.every_strategy, args.to)))
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.families import FAMILIES

    unknown = [f for f in args.families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    rows, strategy_rows = run_all(
        args.families or list(FAMILIES), args.samples, args.timeout, args.every_strategy, args.to
    )
    subset = set(args.to) != set(TARGETS)
    command = " ".join(
        [
            "scripts/coverage",
            *(["--every-strategy"] if args.every_strategy else []),
            *([f"--to {','.join(args.to)}"] if subset else []),
            *args.families,
        ]
    )
    output = Path(args.output)
    if subset:
        title = f"Coverage: {', '.join(args.to)}"
        block = render(rows, command, args.samples, strategy_rows, title)
        output.write_text(merge_section(output.read_text() if output.exists() else "", ",".join(args.to), block))
    else:
        output.write_text(render(rows, command, args.samples, strategy_rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "strategy_rows": strategy_rows}, indent=1))
    print(f"wrote {args.output}: {sum(r['status'] == 'passed' for r in rows)} of {len(rows)} passed", file=sys.stderr)
    return 0 if all(r["status"] == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
