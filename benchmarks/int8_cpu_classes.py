"""int8 SNR against the float artifact per CPU class: native, and an emulated AVX2 CPU (qemu).

Run: .venv/bin/python benchmarks/int8_cpu_classes.py
Exports the test Transformer and CNN to ONNX, OpenVINO and TFLite with int8 and dynamic-int8
artifacts, once with ``--int8-kernels portable`` (the default: 7-bit weights where 8 bits can
saturate) and once with ``vnni`` (8-bit weights), then runs the same 4 random inputs through every
artifact in this interpreter and under ``qemu-x86_64 -cpu Haswell`` (AVX2 + FMA, no AVX-512, no
VNNI), and prints one Markdown table of SNR in dB. Needs Debian's qemu-user.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = ("transformer", "cnn")
KERNELS = ("portable", "vnni")
PRECISIONS = ("int8", "dynamic-int8")
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "tflite": ".tflite"}


def export_all(root: Path) -> None:
    import ondevice
    from tests import models

    for name in MODELS:
        model, example = getattr(models, name)()
        for kernels in KERNELS:
            # TFLite's quantizer has no kernel choice: export it once.
            targets = ["onnx", "openvino"] + (["tflite"] if kernels == "portable" else [])
            ondevice.export(
                model,
                example,
                targets=targets,
                out_dir=root / f"{name}-{kernels}",
                quantize=list(PRECISIONS),
                int8_kernels=kernels,
            )


def measure(root: str) -> dict:
    """SNR of every quantized artifact against its float sibling, in this process (this CPU)."""
    from ondevice.artifacts import ArtifactRunner, Artifacts

    rng = np.random.default_rng(0)
    found = {}
    for folder in sorted(Path(root).iterdir()):
        artifacts = Artifacts.load(folder, verify=False)
        spec = artifacts.source["inputs"][0]
        samples = [{spec["name"]: rng.standard_normal(spec["shape"]).astype(np.float32)} for _ in range(4)]
        for artifact in artifacts:
            sibling = artifacts.float_sibling(artifact)
            if sibling is None:
                continue
            ref = np.concatenate([next(iter(ArtifactRunner(sibling, 1).run(s).values())).ravel() for s in samples])
            out = np.concatenate([next(iter(ArtifactRunner(artifact, 1).run(s).values())).ravel() for s in samples])
            snr = 10 * np.log10(np.sum(ref**2) / max(float(np.sum((ref - out) ** 2)), 1e-30))
            found[f"{folder.name}/{artifact.target}/{artifact.quantize}"] = round(float(snr), 1)
    return found


def main() -> None:
    from benchmarks._common import machine
    from ondevice.cpu import cpu_info, describe

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("qemu-x86_64 not found: apt-get install qemu-user")
    with tempfile.TemporaryDirectory() as tmp:
        export_all(Path(tmp))
        native = measure(tmp)
        code = (
            f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
            f"from benchmarks.int8_cpu_classes import measure; print(json.dumps(measure({tmp!r})))"
        )
        run = subprocess.run(
            [qemu, "-cpu", "Haswell", sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        emulated = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"machine: {machine()}; CPU: {describe(cpu_info())}; emulated: qemu-x86_64 -cpu Haswell\n")
    print(
        "| model | runtime | precision | portable, native | portable, AVX2 | vnni (8-bit), native | "
        "vnni (8-bit), AVX2 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in MODELS:
        for target in SUFFIX:
            for precision in PRECISIONS:
                cells = [
                    native.get(f"{name}-{k}/{target}/{precision}", "-")
                    if where == "n"
                    else emulated.get(f"{name}-{k}/{target}/{precision}", "-")
                    for k in KERNELS
                    for where in ("n", "e")
                ]
                print(f"| {name} | {target} | {precision} | " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
