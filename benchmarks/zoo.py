"""Zoo runs on this machine: (a) wall time with --workers 2 against 1, (b) each target's p50 in the parallel
run against the serial one, (c) a warm re-run (conversion cache) against the cold run.

Run: .venv/bin/python benchmarks/zoo.py [--repeats 2] [--runs 100] [--to onnx,tflite,openvino]
Six ResNet-shaped models (four PyTorch, two Keras; p50 0.5-5 ms), as a user runs `ondevice zoo`, per repeat:
serial cold (--workers 1, empty cache), serial warm (the same again: every export from the cache, validated
again), parallel (--workers 2, no cache), serial warm with --trust-cache (the kept reports reused).
Goals: (a) <= 0.65x, (b) every p50 within 5% (the serial warm run's p50 against the serial cold run's is
the noise floor of two runs on this machine), (c) <= 0.25x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, machine, table

# Four PyTorch and two Keras models whose p50 is 0.5-5 ms: long enough that a median over --runs timed
# calls is not decided by one scheduling hiccup of a busy machine (the tests' models run in microseconds).
MODELS = tuple(
    f"benchmarks/zoo.py:{name}"
    for name in ("resnet_16_64", "resnet_16_96", "resnet_20_80", "resnet_24_96", "keras_cnn_64", "keras_cnn_96")
)
LOAD = []  # the machine's 1-minute load average after each run: other users' work shows here


def resnet_16_64():
    from benchmarks.models import resnet_like

    return resnet_like(16, 64)


def resnet_16_96():
    from benchmarks.models import resnet_like

    return resnet_like(16, 96)


def resnet_20_80():
    from benchmarks.models import resnet_like

    return resnet_like(20, 80)


def resnet_24_96():
    from benchmarks.models import resnet_like

    return resnet_like(24, 96)


def _keras_cnn(size: int, width: int):
    import keras
    import numpy as np

    keras.utils.set_random_seed(size)
    inputs = keras.Input((size, size, 3), batch_size=1, name="image")
    x = inputs
    for stage in range(3):
        channels = width * 2**stage
        x = keras.layers.Conv2D(channels, 3, strides=2 if stage else 1, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Dense(10, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs), np.random.default_rng(size).random((1, size, size, 3), dtype=np.float32)


def keras_cnn_64():
    return _keras_cnn(64, 16)


def keras_cnn_96():
    return _keras_cnn(96, 24)


def write_zoo(folder: Path, runs: int, targets: str) -> Path:
    lines = ["[defaults]", f'to = "{targets}"', f"runs = {runs}", "samples = 4", ""]
    for source in MODELS:
        lines += ["[[model]]", f'source = "{ROOT / source}"', ""]
    path = folder / "zoo.toml"
    path.write_text("\n".join(lines))
    return path


def run_zoo(zoo: Path, out: Path, *options) -> tuple[float, dict]:
    """Wall seconds of one `ondevice zoo` and its scorecard."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ondevice", "zoo", str(zoo), "-o", str(out), "--quiet", *map(str, options)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    LOAD.append(os.getloadavg()[0])
    if proc.returncode not in (0, 1):  # a parity miss still has its timings; a fault does not
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"zoo run failed (exit {proc.returncode})")
    return wall, json.loads((out / "scorecard.json").read_text())


def p50s(card: dict) -> dict:
    return {
        (m["name"], f"{t['target']}[{t['precision']}]"): t["p50_ms"]
        for m in card["models"]
        for t in m["targets"]
        if t.get("p50_ms")
    }


def ratios(now: dict, before: dict) -> dict:
    return {key: now[key] / before[key] for key in before if key in now}


def one_repeat(runs: int, targets: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        tmp = Path(tmp)
        zoo = write_zoo(tmp, runs, targets)
        cache = ("--cache", tmp / "cache")
        cold, cold_card = run_zoo(zoo, tmp / "cold", "--workers", 1, *cache)
        warm, warm_card = run_zoo(zoo, tmp / "warm", "--workers", 1, *cache)
        parallel, parallel_card = run_zoo(zoo, tmp / "parallel", "--workers", 2, "--no-cache")
        trusted, trusted_card = run_zoo(zoo, tmp / "trusted", "--workers", 1, *cache, "--trust-cache")
    hits = [sum(1 for m in card["models"] if (m.get("cache") or {}).get("hit")) for card in (warm_card, trusted_card)]
    return {
        "serial": cold,
        "warm": warm,
        "parallel": parallel,
        "trusted": trusted,
        "hits": hits,
        "parallel_p50": ratios(p50s(parallel_card), p50s(cold_card)),
        "noise_p50": ratios(p50s(warm_card), p50s(cold_card)),
    }


def _spread(values) -> tuple[str, str, str]:
    deviation = [abs(x - 1) for x in values]
    return (
        f"{100 * statistics.median(deviation):.1f}%",
        f"{100 * max(deviation):.1f}%",
        f"{sum(d <= 0.05 for d in deviation)}/{len(deviation)}",
    )


def report(results: list, targets: str) -> None:
    print(
        f"zoo of {len(MODELS)} models (4 PyTorch, 2 Keras) to {targets}; {machine()}; load average after each run "
        f"(cold, warm, parallel, trusted per repeat): {', '.join(f'{x:.1f}' for x in LOAD)}"
    )
    rows = []
    for number, r in enumerate(results, 1):
        rows.append(
            [
                number,
                f"{r['serial']:.1f}",
                f"{r['parallel']:.1f}",
                f"{r['parallel'] / r['serial']:.2f}x",
                *_spread(r["parallel_p50"].values()),
                *_spread(r["noise_p50"].values())[:2],
                f"{r['warm']:.1f}",
                f"{r['warm'] / r['serial']:.2f}x",
                f"{r['trusted']:.1f}",
                f"{r['trusted'] / r['serial']:.2f}x",
                f"{r['hits'][0]}+{r['hits'][1]}/{2 * len(MODELS)}",
            ]
        )
    print(
        table(
            rows,
            [
                "repeat",
                "serial s",
                "workers 2 s",
                "(a)",
                "(b) median |dp50|",
                "max",
                "within 5%",
                "noise median",
                "noise max",
                "warm s",
                "(c) warm",
                "trusted s",
                "(c) trusted",
                "hits",
            ],
        )
    )
    for number, r in enumerate(results, 1):
        print(f"\nrepeat {number}: p50 ratio per target, parallel / serial cold and (noise) serial warm / serial cold")
        print(
            table(
                [
                    [m, t, f"{ratio:.3f}", f"{r['noise_p50'].get((m, t), float('nan')):.3f}"]
                    for (m, t), ratio in sorted(r["parallel_p50"].items())
                ],
                ["model", "target", "parallel", "noise"],
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100, help="timed latency runs per target")
    parser.add_argument("--to", default="onnx,tflite,openvino")
    args = parser.parse_args()
    report([one_repeat(args.runs, args.to) for _ in range(args.repeats)], args.to)


if __name__ == "__main__":
    main()
