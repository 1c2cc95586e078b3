"""Latency fidelity: the p50 ondevice reports vs a bare in-process loop of the same runtime,
and vs OpenVINO's own benchmark_app for the IR.

Exports a MobileNetV2-shaped model once, then for each artifact alternates: ondevice's
validate (worker process, warmup until stable) and a bare loop (in a fresh process as well: create
the session, 10 warmup calls, N timed calls). Same thread count everywhere.

Run: .venv/bin/python benchmarks/latency_fidelity.py [--runs 100] [--rounds 2] [--threads 2]
Goal: ours within +-3% of the bare loop and of benchmark_app.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import machine, table  # noqa: E402

import ondevice
from ondevice._isolate import call_isolated
from benchmarks.models import mobilenet_v2


def bare_p50(target: str, path: str, feed_path: str, threads: int, runs: int) -> float:
    """p50 ms of the runtime's own call in a plain loop (run in a fresh process, like ours)."""
    feed = np.load(feed_path)
    if target == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        call = lambda: sess.run(None, {name: feed})  # noqa: E731
    elif target == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                             "INFERENCE_PRECISION_HINT": "f32",
                                                             "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        call = lambda: request.infer([feed])  # noqa: E731
    else:
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
        index = interp.get_input_details()[0]["index"]

        def call():
            interp.set_tensor(index, feed)
            interp.invoke()
    for _ in range(10):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def benchmark_app_p50(xml: Path, threads: int, runs: int) -> float:
    app = Path(sys.executable).with_name("benchmark_app")
    proc = subprocess.run([str(app), "-m", str(xml), "-d", "CPU", "-hint", "none", "-api", "sync", "-nthreads", str(threads),
                           "-niter", str(runs), "-infer_precision", "f32", "-nstreams", "1"],
                          capture_output=True, text=True, check=True)
    match = re.search(r"Median:\s+([\d.]+) ms", proc.stdout)
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    model, example = mobilenet_v2()
    out = Path(tempfile.mkdtemp(prefix="ondevice-fidelity-"))
    artifacts = ondevice.export(model, example, out_dir=out, threads=args.threads)
    feed = example.numpy()
    ours, bare, app = {}, {}, []
    for _ in range(args.rounds):
        report = ondevice.validate(model, artifacts, samples=1, example_inputs=example, runs=args.runs,
                                   threads=args.threads)
        for t in report.targets:
            ours.setdefault(t.target, []).append(t.latency["p50_ms"])
        for a in artifacts:
            layout_feed = np.transpose(feed, a.inputs[0].perm) if a.inputs[0].perm else feed
            feed_path = out / f"feed-{a.target}.npy"
            np.save(feed_path, np.ascontiguousarray(layout_feed))
            p50 = call_isolated("benchmarks.latency_fidelity:bare_p50",
                                {"target": a.target, "path": str(a.path), "feed_path": str(feed_path),
                                 "threads": args.threads, "runs": args.runs})
            bare.setdefault(a.target, []).append(p50)
        app.append(benchmark_app_p50(out / "model.xml", args.threads, args.runs))
    rows = []
    for target in ours:
        o, b = statistics.median(ours[target]), statistics.median(bare[target])
        rows.append([target, f"{o:.2f}", f"{b:.2f}", f"{(o / b - 1) * 100:+.1f}%", "", ""])
    a = statistics.median(app)
    ov_row = next(r for r in rows if r[0] == "openvino")
    ov_row[4], ov_row[5] = f"{a:.2f}", f"{(statistics.median(ours['openvino']) / a - 1) * 100:+.1f}%"
    print(f"latency fidelity, MobileNetV2-shaped 1x3x224x224, {args.threads} threads, {args.runs} runs, "
          f"median of {args.rounds} rounds ({machine()})")
    print(table(rows, ["target", "ours p50 ms", "bare p50 ms", "ours vs bare", "benchmark_app p50 ms",
                       "ours vs app"]))


if __name__ == "__main__":
    main()
