"""Quantization on all three targets, through the real quantizers and runtimes.

A CNN, an LSTM and a Transformer are each exported once at float32 with fp16 and int8 artifacts
made from the float ones; the tests read the artifacts themselves (tensor types, quantize ops,
weight bytes), judge parity against the source and against the float sibling, and check the two
failure modes the issue names: bad calibration (exit 1, a hint at calibration) and a quantizer
that segfaults (that target is an ``error``, the rest complete).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import ondevice
from ondevice.artifacts import ArtifactRunner, Artifacts
from ondevice.cli import main
from ondevice.core.errors import BadInputError
from ondevice.core.specs import TensorSpec, load_samples, make_samples, samples_digest, spec_from_array
from ondevice.exporter import RANDOM_CALIBRATION_WARNING, _calibration
from ondevice.options import ExportOptions
from ondevice.render import isa_summary
from ondevice.validators.parity import compare_vs_float
from ondevice.validators.precision import inspect
from ondevice.worker import FAULT_ENV
from tests import models

TARGETS = ("onnx", "tflite", "openvino")
PRECISIONS = ("fp16", "int8")
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
SAMPLES, RUNS = 4, 5


def _lstm_inputs(count: int, seed: int) -> np.ndarray:
    """Sequences with a per-sequence offset, so the tiny LSTM's output moves with its input."""
    rng = np.random.default_rng(seed)
    return (2.0 * rng.normal(size=(count, 1, 1, 8)) + rng.normal(size=(count, 1, 10, 8))).astype(np.float32)


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    """model name -> (report, out dir): float, fp16 and int8 artifacts for every target, validated."""
    results = {}
    for name in ("cnn", "lstm", "transformer"):
        out = tmp_path_factory.mktemp(f"quant_{name}")
        model, example = getattr(models, name)()
        options = {}
        if name == "lstm":
            # On i.i.d. noise the LSTM's output barely moves, and a constant artifact would pass
            # int8 tolerances (inconclusive); sequences with an offset give it something to track.
            np.savez(out.parent / f"{name}_calibration.npz", x=_lstm_inputs(32, 1))
            np.savez(out.parent / f"{name}_golden.npz", x=_lstm_inputs(SAMPLES, 2))
            options = {
                "calibration": out.parent / f"{name}_calibration.npz",
                "inputs_file": out.parent / f"{name}_golden.npz",
            }
        results[name] = (
            ondevice.check(
                model,
                example,
                targets=TARGETS,
                out_dir=out,
                quantize=list(PRECISIONS),
                samples=SAMPLES,
                runs=RUNS,
                **options,
            ),
            out,
        )
    return results


def _entry(out, target, precision):
    manifest = json.loads((out / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] if a["target"] == target and a["quantize"] == precision)


def _result(report, target, precision):
    return next(t for t in report.targets if t.target == target and t.quantize == precision)


CASES = [(m, t, p) for m in ("cnn", "lstm", "transformer") for t in TARGETS for p in PRECISIONS]


@pytest.mark.parametrize("name,target,precision", CASES, ids=[f"{m}-{t}-{p}" for m, t, p in CASES])
def test_artifact_is_really_quantized(quantized, name, target, precision):
    _, out = quantized[name]
    entry, float_entry = _entry(out, target, precision), _entry(out, target, None)
    assert entry["path"] == f"model.{precision}{SUFFIX[target]}"
    assert entry["float_artifact"] == float_entry["path"] == f"model{SUFFIX[target]}"
    assert entry["precision"]["found"] == precision and entry["precision"]["passed"] is True
    # Read the file again, independently of what the manifest says.
    info = inspect(out / entry["path"], target)
    float_info = inspect(out / float_entry["path"], target)
    assert info.precision == precision and float_info.precision == "fp32"
    quantized_type = "float16" if precision == "fp16" else ("uint8" if "uint8" in info.weight_bytes else "int8")
    assert info.weight_bytes[quantized_type] > 0.4 * float_info.weight_bytes["float32"] / (
        2 if precision == "fp16" else 4
    )
    # Weights shrink; the whole file only where weights outweigh the graph (see docs/quantization.md).
    assert info.total_weight_bytes < 0.75 * float_info.total_weight_bytes, (info.weight_bytes, float_info.weight_bytes)
    if name == "cnn":
        assert entry["size_bytes"] < 0.85 * float_entry["size_bytes"]
    if target == "openvino":
        assert (out / f"model.{precision}.bin").exists(), "the .bin keeps the name its .xml implies"
    if precision == "int8":
        assert entry["calibration"]["samples"] == 32 and len(entry["calibration"]["sha256"]) == 64
        assert entry["calibration"]["kind"] == ("file" if name == "lstm" else "random")
        assert (
            info.evidence.get("FakeQuantize")
            or info.evidence.get("QuantizeLinear")
            or info.evidence.get("int8 activations")
        )
        assert entry["options"]["int8_kernels"] == "portable"
        # Portable int8 on x86 runtimes: 7-bit weights, read from the file, so no CPU saturates.
        if target == "onnx":
            assert info.int8_weight_max is not None and info.int8_weight_max <= 64, info.int8_weight_max
            assert entry["precision"]["int8_weight_bits"] == 7
        elif target == "openvino":
            assert _ir_dense_weight_max(out / entry["path"]) <= 64


def _ir_dense_weight_max(xml) -> int:
    """Largest |q| of the int8 weights feeding Convolution/MatMul in an IR.

    NNCF's overflow fix leaves depthwise (GroupConvolution) weights at 8 bits: those kernels do not
    sum u8 x s8 pairs in 16 bits, and the emulated AVX2 run (test below) confirms their parity.
    """
    import openvino as ov

    found = 0
    for op in ov.Core().read_model(str(xml)).get_ops():
        if op.get_type_name() != "Constant" or op.get_element_type() != ov.Type.i8:
            continue
        node, kinds = op, []
        for _ in range(3):  # Constant -> Convert -> Multiply -> the layer
            users = list(node.output(0).get_target_inputs())
            node = users[0].get_node() if users else node
            kinds.append(node.get_type_name())
        if kinds[-1] in ("Convolution", "MatMul"):
            found = max(found, int(np.abs(op.get_data().astype(np.int32)).max()))
    assert found > 0, "no int8 Convolution/MatMul weights found"
    return found


# Max abs error against the source as a fraction of the output's peak, and the least SNR: the
# documented per-precision tolerances (docs/parity.md), which must hold on every CPU class
# (int8 kernels differ between AVX2-only, VNNI and AMX machines; docs/quantization.md has the
# figures per class). fp16 is far inside its tolerance everywhere, so it is held tighter.
ERROR_BOUNDS = {"fp16": 5e-3, "int8": 0.2}
MIN_SNR_DB = {"fp16": 60, "int8": 20}


@pytest.mark.parametrize("name,target,precision", CASES, ids=[f"{m}-{t}-{p}" for m, t, p in CASES])
def test_quantized_parity_against_source_and_float(quantized, name, target, precision):
    report, out = quantized[name]
    result = _result(report, target, precision)
    output = result.parity["outputs"][0]
    assert result.parity["samples"] == SAMPLES
    assert output["max_abs_err"] < ERROR_BOUNDS[precision] * output["peak"], output
    assert output["snr_db"] > MIN_SNR_DB[precision]
    assert output["min_snr_db"] == (50 if precision == "fp16" else 20) and output["peak"] > 0.1
    if output["kind"] == "classifier":
        assert output["top1_agreement"] == 1.0 and output["topk_agreement"] == 1.0
    # The bundled CNN's logits hardly move on random images (by 6e-4 of a 0.2 peak: global pooling
    # averages the noise away): a constant artifact would pass fp16 and int8 tolerances, so those
    # verdicts are inconclusive, not passed.
    expected = "inconclusive" if name == "cnn" else "passed"
    assert result.status == expected, result.error
    if name == "cnn":
        assert "a constant artifact would pass" in result.error
    # The split: the quantized artifact against its float sibling on the same samples.
    vs_float, float_error = _split(report, out, name, target, precision)
    assert vs_float.passed
    quant = vs_float.outputs[0]
    assert abs(quant.max_abs_err - output["max_abs_err"]) <= float_error + 1e-6
    assert float_error < 1e-5 < quant.max_abs_err
    # ... and the report carries the same split, computed by validate on the workers' outputs.
    reported = result.parity_vs_float["outputs"][0]
    assert reported["max_abs_err"] == pytest.approx(quant.max_abs_err, rel=1e-5, abs=1e-7)
    assert result.precision["requested"] == result.precision["found"] == precision


def _split(report, out, name, target, precision):
    """compare_vs_float on the report's own samples, and the float artifact's error vs the source."""
    artifacts = Artifacts.load(out)
    quant = artifacts.get(target, precision)
    float_artifact = artifacts.float_sibling(quant)
    if name == "lstm":
        samples = load_samples(str(out.parent / "lstm_golden.npz"), [TensorSpec("x", (1, 10, 8))])
    else:
        _, example = getattr(models, name)()
        spec = spec_from_array(report.source["inputs"][0]["name"], example.numpy())
        samples = make_samples([spec], SAMPLES, 0, {spec.name: example.numpy()})
    assert samples_digest(samples) == report.inputs["sha256"], "not the samples the report judged"
    float_runner, quant_runner = ArtifactRunner(float_artifact), ArtifactRunner(quant)
    float_outputs = [float_runner.run(s) for s in samples]
    quant_outputs = [quant_runner.run(s) for s in samples]
    float_error = _result(report, target, None).parity["outputs"][0]["max_abs_err"]
    return compare_vs_float(float_outputs, quant_outputs, precision), float_error


def test_bad_calibration_fails_with_a_hint(quantized, tmp_path, capfd):
    """Constant-zero calibration: int8 parity fails, exit 1, and the message points at calibration."""
    _, source_out = quantized["transformer"]
    np.savez(tmp_path / "zeros.npz", x=np.zeros((8, 1, 6, 16), np.float32))
    out = tmp_path / "out"
    code = main(
        [
            "check",
            str(source_out / "model.onnx"),
            "--to",
            "onnx,openvino",
            "--quantize",
            "int8",
            "--calibration",
            str(tmp_path / "zeros.npz"),
            "--samples",
            str(SAMPLES),
            "--runs",
            str(RUNS),
            "-o",
            str(out),
        ]
    )
    captured = capfd.readouterr()
    assert code == 1
    assert "calibration input 'x' is constant (0 everywhere)" in captured.err
    assert RANDOM_CALIBRATION_WARNING not in captured.err
    verdict = captured.out.strip().splitlines()[-1]
    assert verdict.startswith("FAILED (") and "--calibration" in verdict
    report = json.loads((out / "report.json").read_text())
    for target in ("onnx", "openvino"):
        int8 = next(t for t in report["targets"] if t["target"] == target and t["quantize"] == "int8")
        assert int8["status"] == "failed" and "calibration" in int8["error"]
        assert int8["parity"]["outputs"][0]["snr_db"] < 10
        floats = next(t for t in report["targets"] if t["target"] == target and t["quantize"] is None)
        assert floats["status"] == "passed"


def test_quantizer_segfault_is_that_targets_error(tmp_path):
    """int8 calibration of a Keras 3 LSTM kills the TFLite converter (SIGSEGV, a real crash)."""
    model, example = models.keras_lstm()
    report = ondevice.check(
        model, example, targets=TARGETS, out_dir=tmp_path, quantize="int8", samples=SAMPLES, runs=RUNS
    )
    assert report.exit_code == 4
    crashed = _result(report, "tflite", "int8")
    assert crashed.status == "error" and "SIGSEGV" in crashed.error
    for target in TARGETS:
        assert _result(report, target, None).status == "passed"
    for target in ("onnx", "openvino"):
        done = _result(report, target, "int8")
        assert done.status in ("passed", "failed", "inconclusive") and done.parity["outputs"][0]["cosine"] > 0.9
    failure = json.loads((tmp_path / "manifest.json").read_text())["failures"][0]
    assert failure["status"] == "error" and failure["signal"] == "SIGSEGV"
    assert [a["status"] for a in failure["attempts"]] == ["crashed", "rejected"]


def test_int8_io_gives_integer_inputs_and_outputs(tmp_path):
    model, example = models.transformer()
    artifacts = ondevice.export(model, example, targets=["tflite"], out_dir=tmp_path, quantize="int8", int8_io=True)
    int8, floats = artifacts.get("tflite", "int8"), artifacts.get("tflite")
    assert set(inspect(int8.path, "tflite").io_dtypes.values()) == {"int8"}
    assert set(inspect(floats.path, "tflite").io_dtypes.values()) == {"float32"}
    assert int8.options["int8_io"] is True and "int8 inputs and outputs" in int8.notes[0]
    # The runner applies each I/O tensor's scale and zero point, so the probe compares like with like.
    assert int8.probe["passed"] is True and 1e-4 < int8.probe["max_abs_err"] < 0.05


def test_random_calibration_warns_once_and_constant_inputs_are_named(capsys, tmp_path):
    source = SimpleNamespace(inputs=[TensorSpec("x", (1, 4))], example=None)
    calib = _calibration(source, None, ["int8"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and RANDOM_CALIBRATION_WARNING in err
    assert len(calib.samples) == 32 and calib.info["kind"] == "random" and calib.info["warnings"] == []
    np.savez(tmp_path / "c.npz", x=np.full((3, 1, 4), 2.5, np.float32))
    calib = _calibration(source, tmp_path / "c.npz", ["int8"])
    assert calib.info["kind"] == "file" and "constant (2.5 everywhere)" in calib.info["warnings"][0]
    assert _calibration(source, None, ["fp16"]) is None


def test_bad_precision_options_are_the_users_error():
    with pytest.raises(BadInputError, match="unknown precision 'int4'"):
        ExportOptions(quantize="int4")
    with pytest.raises(BadInputError, match="--int8-io applies to full-integer"):
        ExportOptions(quantize="fp16", int8_io=True)
    with pytest.raises(BadInputError, match="unknown --int8-kernels 'avx9'"):
        ExportOptions(quantize="int8", int8_kernels="avx9")
    with pytest.raises(BadInputError, match="unknown target 'coreml'"):
        ExportOptions(targets=("onnx", "coreml"))
    options = ExportOptions(quantize=["int8", "fp16", "int8"], int8_io=True)
    assert options.quantize == ("int8", "fp16") and options.targets == ("onnx", "tflite", "openvino")
    assert ExportOptions(quantize=None).quantize == () and ExportOptions(quantize="fp16").quantize == ("fp16",)


def test_unreadable_calibration_is_the_users_error(tmp_path):
    source = SimpleNamespace(inputs=[TensorSpec("x", (1, 4))], example=None)
    with pytest.raises(BadInputError, match="calibration file not found"):
        _calibration(source, tmp_path / "missing.npz", ["int8"])
    np.savez(tmp_path / "other.npz", y=np.zeros((2, 1, 4), np.float32))
    with pytest.raises(BadInputError, match=r"calibration file .* lacks arrays for x"):
        _calibration(source, tmp_path / "other.npz", ["int8"])


def test_quantizer_registry_orders_and_filters_by_source():
    from ondevice.converters.registry import InternalError, quantizer, quantizers_for

    assert [q.name for q in quantizers_for("tflite", "int8", "keras")] == [
        "tflite-keras-converter",
        "tflite-ai-edge-quantizer",
    ]
    assert [q.name for q in quantizers_for("tflite", "int8", "torch")] == ["tflite-ai-edge-quantizer"]
    assert [q.name for q in quantizers_for("openvino", "dynamic-int8", "onnx")] == ["openvino-nncf-compress-weights"]
    with pytest.raises(InternalError, match="registered twice"):
        quantizer("onnx", "int8", "onnx-static-qdq", order=99)(lambda job: None)


def _qemu_needed():
    from ondevice.cpu import EMULATED_CPU, cpu_info, emulator_command

    native = cpu_info()
    if native["isa_class"] != EMULATED_CPU["isa_class"] and emulator_command(native)[0] is None:
        pytest.skip(
            f"this {native['isa_class']} CPU needs qemu-x86_64 to check int8 on AVX2 (scripts/setup --browser "
            "installs it; CI requires it)"
        )
    return native


@pytest.mark.parametrize("name", ["cnn", "lstm", "transformer"])
def test_int8_is_proven_on_every_cpu_class(quantized, name):
    """Every int8 artifact is judged natively and, on a CPU with VNNI/AMX, on an emulated AVX2 CPU."""
    native = _qemu_needed()
    report, _ = quantized[name]
    assert report.environment["cpu"]["isa_class"] == native["isa_class"]
    for target in TARGETS:
        checks = _result(report, target, "int8").isa_checks
        assert checks[0]["how"] == "native" and checks[0]["isa_class"] == native["isa_class"]
        assert checks[0]["checked"] and checks[0]["passed"] is True
        if native["isa_class"] == "avx2":
            assert len(checks) == 1, "an AVX2 machine is its own AVX2 proof"
            continue
        emulated = checks[1]
        assert emulated["isa_class"] == "avx2" and "qemu-x86_64 -cpu Haswell" in emulated["how"]
        if (name, target) == ("lstm", "openvino") and not emulated["checked"]:
            # qemu mistranslates something in OpenVINO's AVX2 path for the unrolled LSTM: its float IR
            # comes out 0.09 off under emulation (the same IR matches on real AVX2 hardware), so the
            # float control refuses the emulated int8 figure and says so instead of failing or passing.
            assert emulated["control_max_abs_err"] > 1e-3 and "did not reproduce the float" in emulated["reason"]
            continue
        assert emulated["checked"] and emulated["passed"] is True, emulated
        assert emulated["control_max_abs_err"] < 1e-4
        worst = emulated["parity"]["outputs"][0]
        assert worst["snr_db"] > MIN_SNR_DB["int8"] and worst["max_abs_err"] < ERROR_BOUNDS["int8"] * worst["peak"]


def test_emulated_crash_is_charged_to_its_own_target(quantized, monkeypatch):
    """One emulated worker checks every int8 artifact; when it dies, each runs again alone, so the
    other targets keep their AVX2 proof. The crash is injected (ONDEVICE_INJECT_FAULT, emulated
    worker only): no runtime can be made to crash under the emulator on demand."""
    native = _qemu_needed()
    if native["isa_class"] == "avx2":
        pytest.skip("an AVX2 CPU is its own AVX2 proof: no emulated worker runs here")
    _, out = quantized["cnn"]
    monkeypatch.setenv(FAULT_ENV, "onnxruntime:emulated-crash")
    model, example = models.cnn()
    report = ondevice.validate(model, out, samples=SAMPLES, example_inputs=example, runs=RUNS)
    int8 = {t: _result(report, t, "int8") for t in TARGETS}
    crashed = int8["onnx"].isa_checks[1]
    assert not crashed["checked"] and "the emulated run failed" in crashed["reason"]
    assert "SIGSEGV" in crashed["reason"], crashed
    # The native verdict stands (judged as before); the AVX2 check says why it did not run.
    assert int8["onnx"].status in ("passed", "inconclusive") and "emulated" not in (int8["onnx"].error or "")
    for target in ("tflite", "openvino"):
        emulated = int8[target].isa_checks[1]
        assert emulated["checked"] and emulated["passed"] is True, (target, emulated)
        assert emulated["control_samples"] == 1 and emulated["control_max_abs_err"] < 1e-4
        assert emulated["parity"]["samples"] == SAMPLES  # int8 on every sample, the float control on one
        assert f"passed on {SAMPLES} samples (float control on 1, max abs err" in isa_summary(int8[target])
    assert len({t.timings["isa_check"] for t in int8.values()}) == 1  # one emulated stage for the run


def test_vnni_kernels_keep_8_bit_weights_and_fail_on_avx2(tmp_path):
    """--int8-kernels vnni: 8-bit weights, which saturate on AVX2 (natively there, emulated elsewhere)."""
    native = _qemu_needed()
    model, example = models.transformer()
    report = ondevice.check(
        model,
        example,
        targets=["onnx", "openvino"],
        out_dir=tmp_path,
        quantize="int8",
        samples=SAMPLES,
        runs=RUNS,
        int8_kernels="vnni",
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for target in ("onnx", "openvino"):
        entry = next(a for a in manifest["artifacts"] if a["target"] == target and a["quantize"] == "int8")
        assert entry["options"]["int8_kernels"] == "vnni" and "VNNI" in " ".join(entry["notes"])
        assert inspect(tmp_path / entry["path"], target).int8_weight_max > 100
        result = _result(report, target, "int8")
        assert result.status == "failed", (target, result.isa_checks)
        avx2 = next(c for c in result.isa_checks if c["isa_class"] == "avx2")
        assert avx2["checked"] and avx2["passed"] is False
        if native["isa_class"] != "avx2":
            assert "emulated avx2 CPU" in result.error and "--int8-kernels portable" in result.error
    assert report.exit_code == 1
    with pytest.raises(BadInputError, match="unknown --int8-kernels 'avx9'"):
        ondevice.export(model, example, targets=["onnx"], out_dir=tmp_path / "o", quantize="int8", int8_kernels="avx9")


def test_cpu_info_reads_isa_classes():
    from ondevice.cpu import cpu_info, has_vnni

    zen2 = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B12\n"
        "flags\t\t: fpu sse avx avx2 fma f16c\n\n"
    )
    info = cpu_info(zen2)
    assert info["isa_class"] == "avx2" and info["isa"] == ["avx2", "f16c", "fma"] and not has_vnni(info)
    assert info["model"] == "AMD EPYC 7B12" and info["vendor"] == "AuthenticAMD"
    sapphire = zen2.replace("avx2 fma", "avx2 fma avx512f avx512bw avx512_vnni amx_tile amx_int8 amx_bf16")
    assert cpu_info(sapphire)["isa_class"] == "amx" and has_vnni(cpu_info(sapphire))
    assert cpu_info(zen2.replace("avx2", "avx2 avx512f avx512bw"))["isa_class"] == "avx512"
    assert cpu_info(zen2.replace("avx2", "avx2 avx_vnni"))["isa_class"] == "avx-vnni"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm sve\nCPU implementer\t: 0x41\n\n"
    assert cpu_info(arm)["isa"] == ["dotprod", "i8mm", "neon", "sve"]
    assert cpu_info(arm)["isa_class"] == "i8mm"
