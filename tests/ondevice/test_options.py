"""ExportOptions / ValidateOptions: defaults, the CLI's flags mapped once, values refused on construction."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import ondevice
from ondevice.cli import build_parser
from ondevice.core.errors import BadInputError
from ondevice.core.vocab import DEFAULT_TARGETS
from ondevice.options import ExportOptions, ValidateOptions, default_threads


def test_defaults_are_the_documented_ones():
    export, validate = ExportOptions(), ValidateOptions()
    assert export.targets == DEFAULT_TARGETS and export.quantize == () and export.int8_kernels == "portable"
    assert export.threads == validate.threads == default_threads() >= 1
    assert (validate.samples, validate.seed, validate.runs, validate.warmup, validate.timeout_s) == (8, 0, None, 5, 600)
    assert validate.budget_s is None and validate.tolerance is None
    assert validate.emulate_cpu and validate.explain and not validate.allow_inconclusive
    assert ValidateOptions(atol=1e-3).tolerance == {"atol": 1e-3}
    assert ValidateOptions(atol=1e-3, rtol=0.0).tolerance == {"atol": 1e-3, "rtol": 0.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        export.threads = 2  # type: ignore[misc]


def test_bad_values_are_the_users_error_before_any_model_loads():
    with pytest.raises(BadInputError, match="--samples must be at least 1"):
        ValidateOptions(samples=0)
    assert ValidateOptions(samples=0, inputs_file="golden.npz").inputs_file == "golden.npz"  # samples unused
    with pytest.raises(BadInputError, match="unknown target 'coreml'"):
        ExportOptions(targets="coreml")
    with pytest.raises(BadInputError, match="--int8-io applies to full-integer"):
        ExportOptions(int8_io=True)


def test_cli_flags_map_to_the_same_options_as_the_api():
    args = build_parser().parse_args(
        "check model.onnx -o out --to onnx,tflite --quantize fp16,int8 --int8-io --dynamic input:0 "
        "--samples 3 --seed 7 --runs 9 --atol 0.01 --threads 2 --no-emulate-cpu --no-explain".split()
    )
    export, validate = ExportOptions.from_flags(vars(args)), ValidateOptions.from_flags(vars(args))
    assert export == ExportOptions(
        targets=("onnx", "tflite"), quantize=("fp16", "int8"), int8_io=True, dynamic={"input": [0]}, threads=2
    )
    assert validate == ValidateOptions(
        samples=3, seed=7, runs=9, atol=0.01, threads=2, emulate_cpu=False, explain=False
    )
    # A zoo model's options are the same names; what a model leaves out takes the defaults.
    assert ValidateOptions.from_flags({"samples": 4}) == ValidateOptions(samples=4)
    assert ExportOptions.from_flags({"to": ["onnx"], "require": None}) == ExportOptions(targets=("onnx",))


def test_api_takes_keywords_after_the_model_and_every_validation_knob():
    with pytest.raises(TypeError):
        ondevice.export("model.onnx", None, ("onnx",))  # type: ignore[misc]
    with pytest.raises(TypeError):
        ondevice.validate("model.onnx", "out", 8)  # type: ignore[misc]
    fields = {f.name for f in dataclasses.fields(ValidateOptions)} - {"inputs_file"}
    for call in (ondevice.check, ondevice.validate):
        keywords = {n for n, p in inspect.signature(call).parameters.items() if p.kind is p.KEYWORD_ONLY}
        assert fields <= keywords, (call.__name__, fields - keywords)
        assert "inputs_file" in keywords
    export_fields = {f.name for f in dataclasses.fields(ExportOptions)}
    for call in (ondevice.check, ondevice.export):
        keywords = {n for n, p in inspect.signature(call).parameters.items() if p.kind is p.KEYWORD_ONLY}
        assert export_fields <= keywords, (call.__name__, export_fields - keywords)


def test_an_fp32_atol_override_is_absolute(torch_cnn_check):
    """The fp32 default atol is 1e-4 of each output's peak (at least 1e-4); ``atol=`` means that many units."""
    from tests.models import cnn

    default_report, out = torch_cnn_check
    for target in default_report.targets:
        output = target.parity["outputs"][0]
        assert output["atol"] == pytest.approx(1e-4 * max(1.0, output["peak"]))
    model, example = cnn()
    report = ondevice.validate(model, out, samples=2, example_inputs=example, runs=2, atol=3e-7, explain=False)
    assert [t.parity["outputs"][0]["atol"] for t in report.targets] == [3e-7] * len(report.targets)
