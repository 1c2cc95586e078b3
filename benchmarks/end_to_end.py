"""End to end: `ondevice check` of a MobileNetV2-shaped model to all three targets, wall time and
peak memory, as a user runs it (a fresh process).

Run: .venv/bin/python benchmarks/end_to_end.py
Peak memory is the largest resident set among the processes the command ran (the CLI itself
and its converter and runtime workers), from getrusage(RUSAGE_CHILDREN).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, machine


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ondevice",
                "check",
                "benchmarks.models:mobilenet_v2",
                "--to",
                "onnx,tflite,openvino",
                "-o",
                out,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(proc.stdout.strip())
    print(f"\nend to end, MobileNetV2-shaped 1x3x224x224 to onnx, tflite, openvino ({machine()})")
    print(f"wall {wall:.1f} s, peak RSS {peak_mb:.0f} MiB, exit code {proc.returncode}")


if __name__ == "__main__":
    main()
