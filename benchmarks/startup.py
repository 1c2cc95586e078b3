"""Start-up: `ondevice --help` and `ondevice doctor` wall time against `python -c pass`.

Run: .venv/bin/python benchmarks/startup.py [--repeats 10]
Goal: --help within 0.3 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, machine, median_time, table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "ondevice --help": [sys.executable, "-m", "ondevice", "--help"],
        "ondevice doctor": [sys.executable, "-m", "ondevice", "doctor"],
    }
    run = lambda cmd: subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)  # noqa: E731
    times = {name: median_time(lambda c=cmd: run(c), args.repeats) for name, cmd in commands.items()}
    base = times["python -c pass"]
    rows = [[name, f"{t * 1e3:.0f} ms", f"{t / base:.2f}x", f"{(t - base) * 1e3:+.0f} ms"] for name, t in times.items()]
    print(f"start-up, median of {args.repeats} ({machine()})")
    print(table(rows, ["command", "wall", "vs python", "ours"]))
    verdict = "within" if times["ondevice --help"] <= 0.3 else "OVER"
    print(f"--help: {times['ondevice --help'] * 1e3:.0f} ms, {verdict} the 300 ms goal")


if __name__ == "__main__":
    main()
