"""ExecuTorch (.pte) as a target, through torch.export, the XNNPACK delegate and the ExecuTorch runtime.

Every PyTorch family is exported once (float32) and run against its source on seeded samples; the
CNN and the Transformer are checked end to end with fp16 and int8 artifacts (the CNN through the
command line, so the reports, JUnit and a gate policy naming the target are exercised too). The
delegate's share is asserted from the manifest, the report and the file itself.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest

import ondevice
from ondevice.artifacts import ArtifactRunner
from ondevice.cli import main
from ondevice.core.errors import BadInputError
from ondevice.core.specs import make_samples
from ondevice.reference import fill_source_outputs
from ondevice.runtimes import get_runner_class
from ondevice.sources import from_object, load_source
from ondevice.validators._pte import read_program
from ondevice.validators.compatibility import check_artifact
from ondevice.validators.parity import Tolerance, compare
from ondevice.validators.precision import inspect
from tests import families, models
from tests.conftest import FACTORY_FILE

TORCH_FAMILIES = [name for name in families.FAMILIES if name.startswith("torch_")]
# Float32 programs measured at <= 2.4e-7 (Transformer, ViT) and <= 9e-8 elsewhere.
BOUND = 1e-5
SAMPLES, RUNS = 4, 5
PT2_FAMILY = "torch_recommender"  # exported from a .pt2 file: four inputs, three of them int64


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``get(family) -> (artifacts, source)``: each PyTorch family exported to ExecuTorch once, on first use."""
    done = {}

    def get(name):
        if name not in done:
            model, example = families.FAMILIES[name]()
            if name == PT2_FAMILY:
                import torch

                path = tmp_path_factory.mktemp("pt2") / "recommender.pt2"
                torch.export.save(torch.export.export(model, example), str(path))
                model, example = str(path), None
            artifacts = ondevice.export(model, example, targets=["executorch"], out_dir=tmp_path_factory.mktemp(name))
            source = load_source(model) if example is None else from_object(model, example)
            fill_source_outputs(source)
            done[name] = artifacts, source
        return done[name]

    return get


@pytest.mark.parametrize("name", TORCH_FAMILIES)
def test_family_runs_on_executorch_like_its_source(exported, name):
    artifacts, source = exported(name)
    artifact = artifacts.get("executorch")
    assert artifacts.failures == [] and artifact.path.name == "model.pte"
    assert artifact.strategy == "torch-executorch-xnnpack"
    assert [(a["strategy"], a["status"]) for a in artifact.attempts] == [("torch-executorch-xnnpack", "accepted")]
    assert {m.matched_by for m in artifact.inputs + artifact.outputs} == {"name"}
    samples = make_samples(source.inputs, SAMPLES, 0, source.example)
    reference = get_runner_class("torch")(source)
    runner = ArtifactRunner(artifact)
    parity = compare([reference.run(s) for s in samples], [runner.run(s) for s in samples], Tolerance.default())
    assert parity.passed and len(parity.outputs) == len(source.outputs)
    assert max(o.max_abs_err for o in parity.outputs) < BOUND
    delegation = artifact.delegation
    assert delegation["backends"] == ["XnnpackBackend"] and delegation["subgraphs"] >= 1
    assert delegation["ops_delegated"] + delegation["ops_portable"] == delegation["ops_total"] > 0
    assert delegation["delegated_share"] == pytest.approx(
        delegation["ops_delegated"] / delegation["ops_total"], abs=1e-4
    )
    assert artifact.precision["found"] == "fp32" and artifact.precision["passed"] is True
    # The file agrees: one XNNPACK delegate per subgraph, and a portable kernel call per op left out.
    program = read_program(artifact.path)
    assert len(program.delegates) == delegation["subgraphs"]
    assert all(d.backend == "XnnpackBackend" and d.decoded and d.nodes for d in program.delegates)
    assert sum(program.kernels.values()) >= delegation["ops_portable"]


def test_delegate_share_is_what_xnnpack_took(exported):
    """Measured: the CNN lowers whole; the multi-head model keeps its spatial mean on a portable kernel."""
    cnn = exported("torch_cnn")[0].get("executorch").delegation
    assert cnn["delegated_share"] == 1.0 and cnn["portable_ops"] == {}
    assert cnn["delegated_ops"]["aten.convolution.default"] == 5
    multi = exported("torch_multi_output")[0].get("executorch")
    assert multi.delegation["portable_ops"] == {"aten.mean.dim": 1}
    assert read_program(multi.path).kernels == {"aten.mean.out": 1}
    assert any("portable kernels: aten.mean.dim x1" in note for note in multi.notes)


def test_portable_strategy_runs_without_a_delegate(tmp_path):
    model, example = families.torch_multi_output()
    artifacts = ondevice.export(
        model, example, targets=["executorch"], out_dir=tmp_path, strategy="torch-executorch-portable"
    )
    artifact = artifacts.get("executorch")
    assert artifact.delegation["subgraphs"] == 0 and artifact.delegation["delegated_share"] == 0.0
    assert artifact.delegation["ops_portable"] == artifact.delegation["ops_total"] > 5
    program = read_program(artifact.path)
    assert program.delegates == [] and program.kernels["aten.convolution.out"] == 2
    assert artifact.probe["passed"] is True and artifact.probe["max_abs_err"] < BOUND
    assert inspect(artifact.path, "executorch").precision == "fp32"
    xnnpack = check_artifact(artifact.path, "executorch")["xnnpack"]
    assert xnnpack.checked and not xnnpack and xnnpack.ops_supported == 0 and xnnpack.partitions == 0
    assert "aten.convolution.out" in xnnpack.unsupported


def test_compatibility_reads_the_xnnpack_share_from_the_file(exported):
    """ondevice.validators.compatibility's executorch entry: XNNPACK graph nodes taken, portable kernel calls not."""
    cnn = check_artifact(exported("torch_cnn")[0].get("executorch").path, "executorch")["xnnpack"]
    assert cnn and cnn.coverage == 1.0 and cnn.partitions == 1 and cnn.unsupported == ()
    multi = check_artifact(exported("torch_multi_output")[0].get("executorch").path, "executorch")["xnnpack"]
    assert not multi and multi.unsupported == ("aten.mean.out",) and multi.partitions == 2
    assert multi.ops_supported == multi.ops_total - 1


def test_runner_sizes_the_thread_pool_and_names_tensors(exported):
    from executorch.extension.pybindings import portable_lib

    artifact = exported("torch_multi_output")[0].get("executorch")
    for threads in (2, 1):
        runner = get_runner_class("executorch")(artifact.path, threads=threads)
        assert portable_lib._threadpool_get_thread_count() == threads
    assert [s.name for s in runner.inputs] == ["image"]
    assert [(s.name, s.shape) for s in runner.outputs] == [
        ("output_0", (1, 4)),
        ("output_1", (1, 3, 10, 12)),
        ("output_2", (1, 10, 6)),
    ]


def test_pte_made_elsewhere_is_validated_like_an_export(tmp_path, capsys):
    """A .pte lowered by ExecuTorch's own API (no tensor names in it): validate pairs its input by shape."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model, example = families.torch_multi_output()
    program = to_edge_transform_and_lower(torch.export.export(model, (example,)), partitioner=[XnnpackPartitioner()])
    path = tmp_path / "elsewhere" / "model.pte"
    path.parent.mkdir()
    path.write_bytes(program.to_executorch().buffer)
    report_path = tmp_path / "report" / "report.json"
    code = main(
        [
            "validate",
            f"{families.__file__}:torch_multi_output",
            str(path),
            "--report",
            str(report_path),
            "--samples",
            "3",
            "--runs",
            "3",
        ]
    )
    assert code == 0, capsys.readouterr().out
    result = json.loads(report_path.read_text())["targets"][0]
    assert (result["target"], result["strategy"], result["status"]) == ("executorch", "external", "passed")
    assert max(o["max_abs_err"] for o in result["parity"]["outputs"]) < BOUND
    # The runtime knows no names: "input" and output_N stand in, which are also the source's output names.
    assert [(m["name"], m["artifact_name"], m["matched_by"]) for m in result["io"]["inputs"]] == [
        ("image", "input", "shape")
    ]
    assert [m["matched_by"] for m in result["io"]["outputs"]] == ["name"] * 3
    assert result["compatibility"]["xnnpack"]["unsupported"] == ["aten.mean.out"]


def test_torchscript_source_reaches_executorch_through_ts2ep(tmp_path, capsys):
    """torch.export refuses a ScriptModule; torch's TorchScript-to-export converter is the way in."""
    import torch

    model, example = models.cnn()
    path = tmp_path / "cnn.pt"
    torch.jit.trace(model, example).save(str(path))
    out = tmp_path / "out"
    code = main(["export", str(path), "--input", "x:1x3x64x64", "--to", "executorch", "-o", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().out
    entry = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    assert entry["strategy"] == "torch-executorch-xnnpack" and entry["delegation"]["delegated_share"] == 1.0
    assert entry["probe"]["passed"] is True and entry["probe"]["max_abs_err"] < BOUND


def test_keras_and_onnx_sources_have_no_route_and_nothing_runs(tmp_path, capsys):
    """Exit 2 before any conversion: not even the targets that do have a route are made."""
    out = tmp_path / "keras"
    code = main(["export", f"{FACTORY_FILE}:keras_cnn", "--to", "onnx,executorch", "-o", str(out)])
    verdict = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 2
    assert verdict.startswith("FAILED") and "no route from keras to executorch" in verdict
    assert not any(out.glob("model*")) and not (out / "manifest.json").exists()
    onnx_file = _tiny_onnx(tmp_path / "tiny.onnx")
    with pytest.raises(BadInputError, match="no route from onnx to executorch: executorch is made from torch"):
        ondevice.export(str(onnx_file), targets=["executorch"], out_dir=tmp_path / "onnx")


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


# ---- fp16 and int8: the CNN (command line) and the Transformer (API) ------------------------------

PRECISIONS = ("fp16", "int8")
ERROR_BOUNDS = {"fp16": 5e-3, "int8": 0.2}  # max abs error / the output's peak, as test_quantize
MIN_SNR_DB = {"fp16": 50, "int8": 20}


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    """name -> (report as JSON, out dir): float, fp16 and int8 programs, validated."""
    policy = tmp_path_factory.mktemp("policy") / "gate.toml"
    policy.write_text(
        '[require]\ntargets = ["executorch"]\nprecisions = ["fp32", "int8"]\n'
        'statuses = ["passed", "inconclusive"]\n\n[[size]]\ntarget = "executorch"\n'
        'precision = "int8"\nmax_bytes = 1000\n'
    )
    cnn = tmp_path_factory.mktemp("et_cnn")
    # Emulated AVX2 for the Transformer only: under qemu, importing the runtime (and torch) takes a minute.
    code = main(
        [
            "check",
            f"{FACTORY_FILE}:cnn",
            "--to",
            "executorch",
            "--quantize",
            ",".join(PRECISIONS),
            "-o",
            str(cnn),
            "--samples",
            str(SAMPLES),
            "--runs",
            str(RUNS),
            "--policy",
            str(policy),
            "--quiet",
            "--no-emulate-cpu",
        ]
    )
    assert code == 1  # the int8 program is over the policy's 1000-byte budget (and inconclusive, below)
    transformer = tmp_path_factory.mktemp("et_transformer")
    model, example = models.transformer()
    ondevice.check(
        model,
        example,
        targets=["executorch"],
        out_dir=transformer,
        quantize=list(PRECISIONS),
        samples=SAMPLES,
        runs=RUNS,
    )
    return {
        name: (json.loads((out / "report.json").read_text()), out)
        for name, out in (("cnn", cnn), ("transformer", transformer))
    }


def _target(report, precision):
    return next(t for t in report["targets"] if t["target"] == "executorch" and t["quantize"] == precision)


def _entry(out, precision):
    manifest = json.loads((out / "manifest.json").read_text())
    return next(a for a in manifest["artifacts"] if a["quantize"] == precision)


CASES = [(name, precision) for name in ("cnn", "transformer") for precision in PRECISIONS]


@pytest.mark.parametrize("name,precision", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_quantized_program_is_judged_against_source_and_float(quantized, name, precision):
    report, out = quantized[name]
    result = _target(report, precision)
    output = result["parity"]["outputs"][0]
    assert output["max_abs_err"] < ERROR_BOUNDS[precision] * output["peak"], output
    assert output["snr_db"] > MIN_SNR_DB[precision]
    # The bundled CNN's logits hardly move on random images: inconclusive on every target (test_quantize).
    assert result["status"] == ("inconclusive" if name == "cnn" else "passed"), result["error"]
    assert _target(report, None)["status"] == "passed"
    vs_float = result["parity_vs_float"]["outputs"][0]
    assert vs_float["max_abs_err"] == pytest.approx(output["max_abs_err"], abs=1e-6)
    entry = _entry(out, precision)
    assert entry["path"] == f"model.{precision}.pte" and entry["float_artifact"] == "model.pte"
    assert entry["precision"]["found"] == precision and result["precision"]["found"] == precision
    assert result["delegation"] == entry["delegation"] and entry["delegation"]["ops_delegated"] > 0


@pytest.mark.parametrize("name", ["cnn", "transformer"])
def test_int8_program_holds_int8_and_is_proven_on_avx2(quantized, name):
    report, out = quantized[name]
    info, float_info = inspect(out / "model.int8.pte", "executorch"), inspect(out / "model.pte", "executorch")
    assert info.precision == "int8" and info.evidence["int8 activations"] > 5
    assert info.weight_bytes["int8"] > 0.9 * float_info.weight_bytes["float32"] / 4 * (0.9 if name == "cnn" else 0.5)
    assert info.total_weight_bytes < 0.6 * float_info.total_weight_bytes
    assert _entry(out, "int8")["calibration"]["samples"] == 32
    delegated = _entry(out, "int8")["delegation"]["delegated_ops"]
    assert delegated["quantized_decomposed.quantize_per_tensor.default"] > 0  # XNNPACK runs the int8 ops
    checks = _target(report, "int8")["isa_checks"]
    assert checks[0]["how"] == "native" and checks[0]["passed"] is True
    if len(checks) == 1:
        return  # an AVX2 machine is its own AVX2 proof
    if name == "cnn":
        assert checks[1] == {
            "isa_class": "avx2",
            "how": "emulated",
            "checked": False,
            "reason": "turned off (--no-emulate-cpu)",
        }
        return
    if "qemu" in checks[1].get("reason", ""):
        pytest.skip(checks[1]["reason"])
    # A VNNI/AMX machine: the program again under qemu -cpu Haswell, its float sibling as the control.
    assert checks[1]["checked"] and checks[1]["passed"] is True, checks[1]
    assert checks[1]["runtime"] == "executorch" and checks[1]["control_max_abs_err"] < 1e-5
    assert checks[1]["parity"]["outputs"][0]["snr_db"] > MIN_SNR_DB["int8"]


def test_fp16_computes_in_half_and_conv_weights_stay_fp32(quantized):
    """XNNPACK's fp16 convolutions keep fp32 weights in the file (op_conv2d force_fp32); linear layers are fp16."""
    cnn = inspect(quantized["cnn"][1] / "model.fp16.pte", "executorch")
    transformer = inspect(quantized["transformer"][1] / "model.fp16.pte", "executorch")
    for info in (cnn, transformer):
        assert info.precision == "fp16" and info.evidence["float16 activations"] > 5
        assert set(info.io_dtypes.values()) == {"float32"}
    assert cnn.weight_bytes["float32"] > 20 * cnn.weight_bytes["float16"]
    assert transformer.weight_bytes["float16"] > transformer.weight_bytes.get("float32", 0)


def test_reports_junit_and_gate_carry_the_target(quantized):
    report, out = quantized["cnn"]
    float_result = _target(report, None)
    assert float_result["runtime"] == "executorch" and float_result["latency"]["p50_ms"] > 0
    assert float_result["footprint"]["peak_rss_run_mb"] > 0 and float_result["strategy"] == "torch-executorch-xnnpack"
    assert "executorch" in report["environment"]["packages"]
    markdown = (out / "report.md").read_text()
    assert "### Delegates" in markdown and "XnnpackBackend took 12 of 12 ops (100%)" in markdown
    assert float_result["compatibility"]["xnnpack"]["supported"] is True
    assert float_result["compatibility"]["xnnpack"]["coverage"] == 1.0
    assert "Delegates: XnnpackBackend took" in (out / "report.html").read_text()
    cases = ElementTree.parse(out / "junit.xml").getroot().findall("testcase")
    names = {(c.get("classname"), c.get("name")) for c in cases}
    for precision in ("fp32", "fp16", "int8"):
        assert {
            (f"ondevice.executorch.{precision}", check) for check in ("export", "parity", "latency", "size")
        } <= names
    size_case = next(c for c in cases if (c.get("classname"), c.get("name")) == ("ondevice.executorch.int8", "size"))
    assert size_case.find("failure") is not None and "1000" in size_case.find("failure").get("message")
    gate = json.loads((out / "gate.json").read_text())
    assert [(f["rule"], f["target"], f["precision"]) for f in gate["failed"]] == [
        ("size.max_bytes", "executorch", "int8")
    ]
