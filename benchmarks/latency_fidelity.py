"""Latency fidelity: the p50 ondevice reports vs a bare loop of the same runtime on the same file.

Both sides run in one process, interleaved: a block of ondevice's timing (the validation worker's own
code path: ArtifactRunner + Runner.timed_call + validators.latency.measure) then a block of the bare
loop, repeated, so the machine's noise hits both alike. Two bare loops per runtime: the runtime's
cheapest call (onnxruntime IOBinding, an OpenVINO request with shared input tensors, LiteRT invoke
on inputs set once) and its plain call (session.run with a dict, request.infer([array]), set_tensor +
invoke). Models: ResNet-shaped CNNs of about 0.5 ms and about 5 ms (benchmarks.models.resnet_like).

Run: .venv/bin/python benchmarks/latency_fidelity.py [--runs 100] [--rounds 7] [--threads 2]
Goal: ours within +-3% of the bare cheapest loop for both models on every runtime.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import machine, table

MODELS = {"0.5 ms": (16, 64), "5 ms": (24, 96)}


def _bare_calls(target: str, path: str, feed: np.ndarray, threads: int, compiled=None) -> dict:
    """The runtime's own calls, written as a user would, on a session of their own.

    OpenVINO's are requests on ``compiled``, ondevice's own compiled model: two compiled models in one
    process run on separate CPU stream executors that contend for the cores (measured: the second one
    timed 20-30% slower whichever it was), which would measure that contention, not per-call overhead.
    """
    if target == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        binding = sess.io_binding()
        binding.bind_cpu_input(name, feed)
        for out in sess.get_outputs():
            binding.bind_output(out.name, "cpu")
        return {"cheapest": lambda: sess.run_with_iobinding(binding), "plain": lambda: sess.run(None, {name: feed})}
    if target == "openvino":
        import openvino as ov

        compiled = compiled or ov.Core().compile_model(
            path,
            "CPU",
            {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
        )
        shared, plain = compiled.create_infer_request(), compiled.create_infer_request()
        shared.set_input_tensor(0, ov.Tensor(feed, shared_memory=True))
        return {"cheapest": shared.infer, "plain": lambda: plain.infer([feed])}
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=threads)
    interp.allocate_tensors()
    index = interp.get_input_details()[0]["index"]
    interp.set_tensor(index, feed)

    def plain():
        interp.set_tensor(index, feed)
        interp.invoke()

    return {"cheapest": interp.invoke, "plain": plain}


def _p50(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def interleaved(out_dir: str, index: int, feed_path: str, threads: int, runs: int, rounds: int) -> dict:
    """In one process: rounds of [ondevice's measure, bare cheapest, bare plain]; the medians of the p50s."""
    from ondevice.artifacts import ArtifactRunner, Artifacts
    from ondevice.validators import latency

    artifact = Artifacts.load(out_dir, verify=False).items[index]
    runner = ArtifactRunner(artifact, threads)
    source_feed = {artifact.inputs[0].source: np.load(feed_path)}
    ours_call = runner.runner.timed_call(runner.feeds(source_feed))
    bare = _bare_calls(
        artifact.target,
        str(artifact.path),
        runner.feeds(source_feed)[artifact.inputs[0].artifact],
        threads,
        getattr(runner.runner, "_compiled", None),
    )
    for call in (ours_call, *bare.values()):
        for _ in range(10):
            call()
    found = {"ours": [], "cheapest": [], "plain": []}
    for _ in range(rounds):
        found["ours"].append(latency.measure(ours_call, threads, runs).p50_ms)
        found["cheapest"].append(_p50(bare["cheapest"], runs))
        found["plain"].append(_p50(bare["plain"], runs))
    return {key: statistics.median(values) for key, values in found.items()}


def main() -> None:
    import ondevice
    from benchmarks.models import resnet_like
    from ondevice.core.isolate import call_isolated
    from ondevice.cpu import cpu_info, describe

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for label, (width, size) in MODELS.items():
        model, example = resnet_like(width, size)
        out = Path(tempfile.mkdtemp(prefix="ondevice-fidelity-"))
        artifacts = ondevice.export(model, example, out_dir=out, threads=args.threads)
        np.save(out / "feed.npy", example.numpy())
        for index, artifact in enumerate(artifacts):
            # A fresh process per artifact, as validation does; both sides inside it.
            p50 = call_isolated(
                "benchmarks.latency_fidelity:interleaved",
                {
                    "out_dir": str(out),
                    "index": index,
                    "feed_path": str(out / "feed.npy"),
                    "threads": args.threads,
                    "runs": args.runs,
                    "rounds": args.rounds,
                },
            )
            rows.append(
                [
                    label,
                    artifact.target,
                    f"{p50['ours']:.3f}",
                    f"{p50['cheapest']:.3f}",
                    f"{(p50['ours'] / p50['cheapest'] - 1) * 100:+.1f}%",
                    f"{p50['plain']:.3f}",
                    f"{(p50['ours'] / p50['plain'] - 1) * 100:+.1f}%",
                ]
            )
    print(
        f"latency fidelity, {args.threads} threads, {args.runs} runs x {args.rounds} interleaved rounds "
        f"({machine()}; {describe(cpu_info())})"
    )
    print(
        table(
            rows,
            [
                "model",
                "target",
                "ours p50 ms",
                "bare cheapest p50 ms",
                "ours vs cheapest",
                "bare plain p50 ms",
                "ours vs plain",
            ],
        )
    )


if __name__ == "__main__":
    main()
