"""Size and error of fp16, dynamic-int8 and int8 artifacts of the test models, per target.

Run: .venv/bin/python benchmarks/quantization_figures.py [--samples 4] [--targets executorch]
The models and data are the ones tests/converters/test_quantize.py uses: the bundled CNN and the
Transformer on generated inputs (int8 calibrated on 32 generated samples), the LSTM on sequences
with a per-sequence offset (calibration and validation files drawn from that distribution).
Prints one Markdown table: file size and weight bytes relative to the float artifact, error
against the source (max abs error / the output's peak, SNR) and against the float artifact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import machine, table

PRECISIONS = ("fp16", "dynamic-int8", "int8")
TARGETS = ("onnx", "tflite", "openvino")


def lstm_inputs(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (2.0 * rng.normal(size=(count, 1, 1, 8)) + rng.normal(size=(count, 1, 10, 8))).astype(np.float32)


def run_model(name: str, out: Path, samples: int, targets=TARGETS):
    import ondevice
    from tests import models

    model, example = getattr(models, name)()
    options = {}
    if name == "lstm":
        np.savez(out / "calibration.npz", x=lstm_inputs(32, 1))
        np.savez(out / "golden.npz", x=lstm_inputs(samples, 2))
        options = {"calibration": out / "calibration.npz", "inputs_file": out / "golden.npz"}
    report = ondevice.check(
        model,
        example,
        targets=targets,
        out_dir=out / "out",
        quantize=list(PRECISIONS),
        samples=samples,
        runs=5,
        **options,
    )
    return report, out / "out"


def rows_for(name: str, report, out: Path, samples: list, targets=TARGETS) -> list[list]:
    from ondevice.artifacts import ArtifactRunner, Artifacts
    from ondevice.validators.parity import compare_vs_float
    from ondevice.validators.precision import inspect

    artifacts = Artifacts.load(out)
    rows = []
    for target in targets:
        base = artifacts.get(target)
        base_info = inspect(base.path, target)
        base_outputs = [ArtifactRunner(base).run(s) for s in samples]
        for precision in PRECISIONS:
            quant = artifacts.get(target, precision)
            result = next(t for t in report.targets if t.target == target and t.quantize == precision)
            if quant is None:
                rows.append([name, target, precision, result.status, "-", "-", "-", "-", "-", "-", "-"])
                continue
            out0 = result.parity["outputs"][0]
            avx2 = next((c for c in result.isa_checks or [] if c["isa_class"] == "avx2"), None)
            if avx2 is None:
                avx2_cell = "-"
            elif avx2.get("checked"):
                avx2_cell = f"{avx2['parity']['outputs'][0]['snr_db']:.1f} ({avx2['how'].split(' ')[0]})"
            else:
                control = avx2.get("control_max_abs_err")
                avx2_cell = (
                    f"not checked (emulator control off by {control:.2g})"
                    if control is not None
                    else f"not checked ({avx2.get('reason')})"
                )
            vs_float = compare_vs_float(base_outputs, [ArtifactRunner(quant).run(s) for s in samples], precision)
            info = inspect(quant.path, target)
            rows.append(
                [
                    name,
                    target,
                    precision,
                    result.status,
                    f"{quant.size_bytes / base.size_bytes:.2f}",
                    f"{info.total_weight_bytes / base_info.total_weight_bytes:.2f}",
                    f"{out0['max_abs_err']:.2g}",
                    f"{out0['max_abs_err'] / out0['peak']:.3f}",
                    f"{out0['snr_db']:.1f}",
                    avx2_cell,
                    f"{vs_float.outputs[0].max_abs_err:.2g}",
                ]
            )
    return rows


def validation_samples(name: str, report, out: Path, count: int) -> list:
    from ondevice.core.specs import TensorSpec, load_samples, make_samples, spec_from_array
    from tests import models

    if name == "lstm":
        return load_samples(str(out.parent / "golden.npz"), [TensorSpec("x", (1, 10, 8))])
    _, example = getattr(models, name)()
    spec = spec_from_array(report.source["inputs"][0]["name"], example.numpy())
    return make_samples([spec], count, 0, {spec.name: example.numpy()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated targets (default: onnx,tflite,openvino; executorch also works)",
    )
    args = parser.parse_args()
    targets = tuple(t for t in args.targets.split(",") if t)
    rows = []
    for name in ("cnn", "lstm", "transformer"):
        with tempfile.TemporaryDirectory() as tmp:
            report, out = run_model(name, Path(tmp), args.samples, targets)
            rows += rows_for(name, report, out, validation_samples(name, report, out, args.samples), targets)
    from ondevice.cpu import cpu_info, describe

    print(f"machine: {machine()}; CPU: {describe(cpu_info())}; {args.samples} validation samples per model\n")
    print(
        table(
            rows,
            [
                "model",
                "target",
                "precision",
                "status",
                "file size vs float",
                "weight bytes vs float",
                "max abs err",
                "err / peak",
                "SNR dB",
                "SNR dB on AVX2",
                "max abs err vs float artifact",
            ],
        )
    )


if __name__ == "__main__":
    main()
