"""``ondevice doctor``: what is installed, from package metadata, without importing any framework."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util

from .runtimes.registry import RUNTIME_MODULES, TARGET_RUNTIMES

# (role, distribution, module, what it is for)
_CHECKS = [
    ("framework", "torch", "torch", "PyTorch sources"),
    ("framework", "tensorflow", "tensorflow", "Keras sources, TFLite conversion"),
    ("framework", "keras", "keras", "Keras sources"),
    ("converter", "onnx", "onnx", "ONNX files"),
    ("converter", "onnxscript", "onnxscript", "PyTorch -> ONNX (dynamo exporter)"),
    ("converter", "tf2onnx", "tf2onnx", "Keras -> ONNX"),
    ("converter", "onnx2tf", "onnx2tf", "ONNX -> TFLite"),
    ("converter", "litert-torch", "litert_torch", "PyTorch -> TFLite"),
    ("converter", "openvino", "openvino", "any -> OpenVINO IR"),
    ("converter", "executorch", "executorch", "PyTorch -> ExecuTorch (.pte, XNNPACK delegate)"),
    ("quantizer", "nncf", "nncf", "OpenVINO int8 (weights and static)"),
    ("quantizer", "ai-edge-quantizer", "ai_edge_quantizer", "TFLite fp16 / int8"),
    ("quantizer", "torchao", "torchao", "ExecuTorch int8 (pt2e, XNNPACK quantizer)"),
    ("runtime", "onnxruntime", "onnxruntime", "runs .onnx"),
    ("runtime", "openvino", "openvino", "runs OpenVINO IR"),
    ("runtime", "ai-edge-litert", "ai_edge_litert", "runs .tflite (default)"),
    ("runtime", "tflite-runtime", "tflite_runtime", "runs .tflite (NumPy 1 edge boxes)"),
    ("runtime", "executorch", "executorch", "runs .pte (XNNPACK and portable kernels)"),
]


def doctor() -> tuple[int, list[str]]:
    """One line per component and the verdict line; exit 0 when every target has a converter path and a runtime."""
    found, lines = {}, []
    for role, dist, module, purpose in _CHECKS:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
        usable = version is not None and importlib.util.find_spec(module) is not None
        found[module] = usable
        state = version if usable else "missing"
        lines.append(f"{role:10} {dist:18} {state:14} {purpose}")
    lines += _cpu_lines()
    # A target needs one of its runtimes; the package extras are named after the targets.
    missing = [
        target
        for target, runtimes in TARGET_RUNTIMES.items()
        if not any(found.get(RUNTIME_MODULES[r], False) for r in runtimes)
    ]
    if not missing:
        return 0, [*lines, "PASSED (a runtime for every target is installed)"]
    extras = ",".join(missing)
    return 2, [*lines, f"FAILED (no runtime for {', '.join(missing)}; pip install 'ondevice[{extras}]')"]


def _cpu_lines() -> list[str]:
    """The CPU and whether int8 artifacts can also be proven on an emulated AVX2 CPU here."""
    from .cpu import EMULATED_CPU, cpu_info, describe, emulator_command

    info = cpu_info()
    lines = [f"{'cpu':10} {describe(info)}"]
    if info["isa_class"] == EMULATED_CPU["isa_class"]:
        return [*lines, f"{'int8':10} this CPU is of the avx2 class: int8 parity here is the AVX2 proof"]
    launcher, why = emulator_command(info)
    proof = (
        f"also proven on an emulated avx2 CPU ({' '.join(launcher[1:])} via {launcher[0]})"
        if launcher
        else f"not proven on avx2 here: {why}"
    )
    return [*lines, f"{'int8':10} {proof}"]
