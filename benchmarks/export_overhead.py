"""Export overhead: `ondevice export` of one route vs calling the same converter directly.

Both run in this process, interleaved, after one warm-up conversion each (so imports are not
counted). "ours" is the full export: the strategy, loading the artifact in its runtime, the
one-sample parity probe, hashing and the manifest. Strategies that ondevice runs in a
subprocess for safety (Keras->TFLite, onnx2tf) pay a fresh interpreter on purpose; the table
says which.

Run: .venv/bin/python benchmarks/export_overhead.py [--repeats 3]
Goal: ours / direct <= 1.05 for in-process strategies.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import machine, table
from ondevice.converters._openvino import _telemetry_off  # the direct calls must not phone home either
from ondevice.core.lazy import quiet_environment
from ondevice.core.quiet import quiet

quiet_environment()


def _torch_source():
    from ondevice.examples.tiny_cnn import build
    from ondevice.sources import from_object

    return from_object(*build())


def _keras_source():
    from ondevice.sources import from_object
    from tests.models import keras_cnn

    return from_object(*keras_cnn())


def direct_torch_onnx(src, out: Path):
    import torch

    torch.onnx.export(src.model, (src.model_example,), str(out / "m.onnx"), dynamo=True, verbose=False)


def direct_torch_openvino(src, out: Path):
    import openvino as ov
    import torch

    program = torch.export.export(src.model, (src.model_example,))
    with _telemetry_off():
        ov.save_model(ov.convert_model(program), str(out / "m.xml"), compress_to_fp16=False)


def direct_torch_tflite(src, out: Path):
    import litert_torch

    litert_torch.convert(src.model, (src.model_example,)).export(str(out / "m.tflite"))


def direct_keras_onnx(src, out: Path):
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec(s.shape, s.dtype, name=s.name) for s in src.inputs]
    tf2onnx.convert.from_keras(src.model, input_signature=spec, opset=17, output_path=str(out / "m.onnx"))


def direct_keras_openvino(src, out: Path):
    import openvino as ov

    with _telemetry_off():
        ov.save_model(
            ov.convert_model(src.model, input=[list(s.shape) for s in src.inputs]),
            str(out / "m.xml"),
            compress_to_fp16=False,
        )


def direct_onnx_openvino(src, out: Path):
    import openvino as ov

    with _telemetry_off():
        ov.save_model(ov.convert_model(str(src.path)), str(out / "m.xml"), compress_to_fp16=False)


ROUTES = [
    ("torch", "onnx", "torch-onnx-dynamo", direct_torch_onnx, "in-process"),
    ("torch", "openvino", "torch-openvino-export", direct_torch_openvino, "in-process"),
    ("torch", "tflite", "torch-tflite-litert", direct_torch_tflite, "in-process"),
    ("keras", "onnx", "keras-onnx-tf2onnx", direct_keras_onnx, "in-process"),
    ("keras", "openvino", "keras-openvino-direct", direct_keras_openvino, "in-process"),
    ("onnx", "openvino", "onnx-openvino", direct_onnx_openvino, "in-process"),
]


def _ours(src, target, strategy, out: Path):
    from ondevice.exporter import export_source
    from ondevice.options import ExportOptions

    export_source(src, out, ExportOptions(targets=(target,), strategy=strategy, threads=1))


def measure_route(src, target, strategy, direct, repeats: int) -> tuple[float, float]:
    times = {"direct": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):  # round 0 warms imports and caches
            for kind in ("direct", "ours"):
                out = Path(tmp) / f"{kind}{i}"
                out.mkdir()
                start = time.perf_counter()
                with quiet():
                    direct(src, out) if kind == "direct" else _ours(src, target, strategy, out)
                if i:
                    times[kind].append(time.perf_counter() - start)
    return statistics.median(times["direct"]), statistics.median(times["ours"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch_src = _torch_source()
    torch_src.model_example = __import__("torch").from_numpy(torch_src.example_feeds()["input"])
    keras_src = _keras_source()
    from ondevice.exporter import export_source
    from ondevice.options import ExportOptions
    from ondevice.sources import load_source

    with tempfile.TemporaryDirectory() as tmp, quiet():
        export_source(torch_src, tmp, ExportOptions(targets=("onnx",), threads=1))
        onnx_src = load_source(str(Path(tmp) / "model.onnx"))
        onnx_src.path = Path(tempfile.mkdtemp()) / "model.onnx"
        onnx_src.path.write_bytes((Path(tmp) / "model.onnx").read_bytes())
        onnx_src.model = onnx_src.path
    sources = {"torch": torch_src, "keras": keras_src, "onnx": onnx_src}
    rows = []
    for framework, target, strategy, direct, mode in ROUTES:
        d, o = measure_route(sources[framework], target, strategy, direct, args.repeats)
        rows.append([f"{framework}->{target}", strategy, f"{d:.2f} s", f"{o:.2f} s", f"{o / d:.2f}x", mode])
        print(rows[-1], flush=True)
    print(f"\nexport overhead, median of {args.repeats} after a warm-up ({machine()})")
    print(table(rows, ["route", "strategy", "direct", "ours", "ratio", "mode"]))


if __name__ == "__main__":
    main()
