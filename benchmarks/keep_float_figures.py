"""--keep-float auto against plain int8, per model and target: what was kept, the error before and after,
and the size and p50 against pure int8 and float.

Run: .venv/bin/python benchmarks/keep_float_figures.py [--samples 8] [--runs 50]
Models where plain int8 fails the int8 tolerances: tests/models.py:outlier_mlp (two outlier features
60x the rest; 32 generated calibration samples) and tests/families.py:torch_transformer calibrated on
a file of 2 generated token sequences (a user calibrating on a couple of examples). Each model is
checked twice on the same validation samples, with --quantize int8 and with --keep-float auto added;
every figure comes from those two reports (p50: each check's own validation).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import machine, table

TARGETS = ("onnx", "tflite", "openvino")
HEADER = [
    "model",
    "target",
    "kept in float",
    "float weights",
    "plain int8: err/peak, SNR dB, status",
    "keep-float: err/peak, SNR dB, status",
    "size KiB: mixed / int8 / float",
    "p50 ms: mixed / int8 / float",
    "rounds",
]


def cases(folder: Path):
    """(name, model, example, calibration file or None)."""
    from ondevice.api import _source
    from ondevice.core.specs import make_samples
    from tests import families, models

    model, example = models.outlier_mlp()
    yield "outlier_mlp", model, example, None
    model, example = families.torch_transformer()
    inputs = _source(model, example).inputs
    calibration = make_samples(inputs, 2, 77)
    path = folder / "transformer_calibration.npz"
    np.savez(path, **{spec.name: np.stack([s[spec.name] for s in calibration]) for spec in inputs})
    yield "torch_transformer (2 calibration samples)", model, example, path


def row(name: str, target: str, plain, mixed) -> list[str]:
    def pick(report, precision):
        return next(t for t in report.targets if t.target == target and t.quantize == precision)

    before, after, floats = pick(plain, "int8"), pick(mixed, "int8"), pick(mixed, None)
    record = after.keep_float or {}
    kept = ", ".join(layer["layer"] for layer in record.get("layers", [])) or "-"

    def errors(result):
        out = result.parity["outputs"][0]
        return f"{out['max_abs_err'] / out['peak']:.3f}, {out['snr_db']:.1f}, {result.status}"

    sizes = f"{after.size_bytes / 1024:.1f} / {before.size_bytes / 1024:.1f} / {floats.size_bytes / 1024:.1f}"
    p50 = f"{after.latency['p50_ms']:.4f} / {before.latency['p50_ms']:.4f} / {floats.latency['p50_ms']:.4f}"
    return [
        name,
        target,
        kept,
        f"{100 * record.get('float_weight_fraction', 0):.1f}%",
        errors(before),
        errors(after),
        sizes,
        p50,
        str(len(record.get("rounds", [])) - 1),
    ]


def main() -> None:
    import ondevice

    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, example, calibration in cases(Path(tmp)):
            options = {
                "targets": TARGETS,
                "quantize": "int8",
                "samples": args.samples,
                "runs": args.runs,
                "calibration": calibration,
            }
            plain = ondevice.check(model, example, out_dir=Path(tmp) / "plain", **options)
            mixed = ondevice.check(model, example, out_dir=Path(tmp) / "mixed", keep_float="auto", **options)
            rows += [row(name, target, plain, mixed) for target in TARGETS]
    print(f"{machine()}; {args.samples} validation samples (seed 0), {args.runs} timed runs")
    print(table(rows, HEADER))


if __name__ == "__main__":
    main()
