"""Cold `ondevice check` of ResNet-18 to onnx, tflite and openvino: this tree against an earlier
release, side by side, in fresh processes, alternating, so the load of a shared machine falls on both.

Run: .venv/bin/python benchmarks/cold_check.py --baseline <git ref> [--rounds 3]
The baseline is the ref's tree (``git archive``) run with this venv. Each round runs both once,
in alternating order; the table gives the median wall time, the ratio, the report's own stage
timings of the last round, and whether each target's verdict and max abs error agree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, machine, table

COMMAND = ["-m", "ondevice", "check", "benchmarks.models:resnet18", "--to", "onnx,tflite,openvino"]


def _extract(ref: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    # Both sides check the same model: this tree's definition, which older releases may not have.
    shutil.copy(ROOT / "benchmarks" / "models.py", into / "benchmarks" / "models.py")
    return into


def _run(tree: Path, out: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *COMMAND, "-o", str(out)], cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"check in {tree} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return wall, json.loads((out / "report.json").read_text())


def _verdicts(report: dict) -> dict:
    return {
        t["target"]: (t["status"], max(o["max_abs_err"] for o in t["parity"]["outputs"])) for t in report["targets"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git ref of the release to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"baseline": [], "this tree": []}
    reports: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"baseline": _extract(args.baseline, Path(tmp) / "baseline"), "this tree": ROOT}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for name in order:
                wall, reports[name] = _run(trees[name], Path(tmp) / f"out-{name.replace(' ', '_')}-{round_}")
                walls[name].append(wall)
                print(f"round {round_ + 1}: {name} {wall:.1f} s", flush=True)
    base, ours = statistics.median(walls["baseline"]), statistics.median(walls["this tree"])
    print(f"\ncold check of ResNet-18 (1x3x224x224) to onnx, tflite, openvino; {machine()}")
    print(f"baseline {args.baseline}: median {base:.1f} s; this tree: median {ours:.1f} s; ratio {ours / base:.2f}x\n")
    rows = []
    for name, report in reports.items():
        for target in report["targets"]:
            timings = target.get("timings") or {}
            export, worker = timings.get("export", 0), timings.get("worker", 0)
            rows.append([name, target["target"], target["status"], f"{export:.1f}", f"{worker:.1f}"])
    print(table(rows, ["tree", "target", "verdict", "export s", "validation worker s"]))
    same = _verdicts(reports["baseline"]).keys() == _verdicts(reports["this tree"]).keys() and all(
        _verdicts(reports["baseline"])[t][0] == v[0] for t, v in _verdicts(reports["this tree"]).items()
    )
    print(f"\nverdicts unchanged: {same}")
    for target, (status, err) in _verdicts(reports["this tree"]).items():
        print(f"  {target}: {status}, max abs err {err:.3g} (baseline {_verdicts(reports['baseline'])[target][1]:.3g})")


if __name__ == "__main__":
    main()
