"""The Python API: export, validate, check. Each accepts a live model or a SOURCE string."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .core.vocab import DEFAULT_TARGETS as TARGETS


def _source(
    model: Any,
    example_inputs: Any = None,
    inputs: Iterable[str] = (),
    trust_pickle: bool = False,
    trust_graph: bool = False,
):
    from .core.specs import parse_input_spec
    from .sources import from_object, load_source

    declared = [parse_input_spec(s) if isinstance(s, str) else s for s in inputs]
    if isinstance(model, (str, Path)):
        return load_source(str(model), declared, trust_pickle, trust_graph)
    return from_object(model, example_inputs, declared)


def export(
    model,
    example_inputs=None,
    *,
    targets=TARGETS,
    out_dir="out",
    inputs=(),
    quantize=None,
    strategy=None,
    dynamic=None,
    threads=None,
    trust_pickle=False,
    calibration=None,
    int8_io=False,
    int8_kernels="portable",
    trust_graph=False,
    keep_work=False,
    require=None,
    keep_float=None,
    keep_float_cap=None,
):
    """Convert ``model`` to each target in ``out_dir``; returns the Artifacts (manifest written).

    ``quantize`` ("fp16", "dynamic-int8", "int8", or a list of them) adds quantized artifacts made
    from the float ones; ``calibration`` is an .npz of int8 calibration inputs; ``int8_io`` gives
    full-integer TFLite models int8 inputs and outputs; ``int8_kernels`` is "portable" (int8 exact on
    every x86 CPU) or "vnni" (8-bit weights, for fleets with VNNI or AMX). ``require`` ({"tflite":
    ["gpu"]} or ["tflite:gpu"]) keeps the first strategy whose artifact runs whole on those accelerator
    backends. ``keep_float`` ("auto" or a list of the source's layer names; int8 only) leaves layers in
    float until int8 passes, within ``keep_float_cap`` (default 0.1) of the weight bytes (docs/quantization.md).
    The converters work in ``out_dir/.work``, removed at the end unless ``keep_work``. Every argument
    after ``example_inputs`` is a keyword.
    """
    from .core.scratch import run_scratch
    from .exporter import export_source
    from .keep_float import parse
    from .options import ExportOptions

    options = ExportOptions(
        targets=tuple(targets),
        quantize=quantize,
        strategy=strategy,
        dynamic=dynamic or {},
        calibration=calibration,
        threads=threads,
        int8_io=int8_io,
        int8_kernels=int8_kernels,
        require=require,
        keep_float=parse(keep_float, keep_float_cap),
        keep_work=keep_work,
    )
    with run_scratch(out_dir, keep_work):
        source = _source(model, example_inputs, inputs=inputs, trust_pickle=trust_pickle, trust_graph=trust_graph)
        return export_source(source, out_dir, options)


def validate(
    model,
    artifacts,
    *,
    samples=8,
    seed=0,
    example_inputs=None,
    inputs=(),
    inputs_file=None,
    atol=None,
    rtol=None,
    threads=None,
    runs=None,
    warmup=5,
    budget_s=None,
    timeout_s=600,
    allow_inconclusive=False,
    allow_precision_change=False,
    emulate_cpu=True,
    explain=True,
    trust_pickle=False,
    io_map=(),
    precision=None,
    out_dir=None,
    trust_graph=False,
    keep_work=False,
):
    """Judge ``artifacts`` against ``model``; returns a Report.

    ``artifacts`` is an Artifacts, an export folder, or files made by any tool (an .onnx, .tflite or
    .xml path, a list of them, or a folder of them without a manifest). For those, ``io_map``
    ({source name: artifact name or "name:perm"}, or "src=art[:perm]" strings) pairs what cannot be
    matched unambiguously, ``precision`` is the precision they are meant to have (None: fp32), and
    ondevice's manifest for them is written to ``out_dir`` (a temporary folder when None). The runtimes
    work in a scratch folder in the temp folder, removed at the end unless ``keep_work``. ``warmup``
    untimed runs precede the ``runs`` timed ones (None: 20 to 50, until the p50's 95% CI is within 2% of
    it), which stop after ``budget_s`` seconds (None: all);
    a runtime worker is killed after ``timeout_s``. Every argument after ``artifacts`` is a keyword.
    """
    import tempfile

    from .artifacts import Artifacts
    from .byo import is_export_folder, prepare
    from .core.scratch import run_scratch
    from .options import ValidateOptions
    from .pipeline import validate_artifacts

    options = ValidateOptions(
        samples=samples,
        seed=seed,
        inputs_file=inputs_file,
        atol=atol,
        rtol=rtol,
        threads=threads,
        runs=runs,
        warmup=warmup,
        budget_s=budget_s,
        timeout_s=timeout_s,
        allow_inconclusive=allow_inconclusive,
        allow_precision_change=allow_precision_change,
        emulate_cpu=emulate_cpu,
        explain=explain,
    )
    with run_scratch(None, keep_work):
        source = _source(model, example_inputs, inputs=inputs, trust_pickle=trust_pickle, trust_graph=trust_graph)
        if isinstance(artifacts, Artifacts):
            return validate_artifacts(source, artifacts, options)
        if is_export_folder(artifacts):
            return validate_artifacts(source, Artifacts.load(artifacts), options)
        hints = [f"{k}={v}" for k, v in io_map.items()] if isinstance(io_map, dict) else list(io_map)
        precision = None if precision == "fp32" else precision
        with tempfile.TemporaryDirectory(prefix="ondevice-byo-") as scratch:
            found = prepare(
                source, artifacts, out_dir or scratch, hints=hints, precision=precision, threads=options.threads
            )
            return validate_artifacts(source, found, options)


def check(
    model,
    example_inputs=None,
    *,
    targets=TARGETS,
    out_dir="out",
    samples=8,
    seed=0,
    inputs=(),
    inputs_file=None,
    atol=None,
    rtol=None,
    threads=None,
    runs=None,
    warmup=5,
    budget_s=None,
    timeout_s=600,
    allow_inconclusive=False,
    allow_precision_change=False,
    emulate_cpu=True,
    explain=True,
    quantize=None,
    strategy=None,
    dynamic=None,
    trust_pickle=False,
    calibration=None,
    int8_io=False,
    int8_kernels="portable",
    trust_graph=False,
    keep_work=False,
    require=None,
    keep_float=None,
    keep_float_cap=None,
):
    """Export and validate in one step; writes OUT/report.json (+ .md, .html, junit.xml); returns the Report.

    Export's keywords are ``export``'s, validation's are ``validate``'s. Converters and runtimes work
    in ``out_dir/.work``, removed at the end unless ``keep_work``. Every argument after
    ``example_inputs`` is a keyword.
    """
    from .core.scratch import run_scratch
    from .keep_float import parse
    from .options import ExportOptions, ValidateOptions
    from .pipeline import check_source
    from .publish import publish

    export_options = ExportOptions(
        targets=tuple(targets),
        quantize=quantize,
        strategy=strategy,
        dynamic=dynamic or {},
        calibration=calibration,
        threads=threads,
        int8_io=int8_io,
        int8_kernels=int8_kernels,
        require=require,
        keep_float=parse(keep_float, keep_float_cap),
        keep_work=keep_work,
    )
    validate_options = ValidateOptions(
        samples=samples,
        seed=seed,
        inputs_file=inputs_file,
        atol=atol,
        rtol=rtol,
        threads=threads,
        runs=runs,
        warmup=warmup,
        budget_s=budget_s,
        timeout_s=timeout_s,
        allow_inconclusive=allow_inconclusive,
        allow_precision_change=allow_precision_change,
        emulate_cpu=emulate_cpu,
        explain=explain,
    )
    with run_scratch(out_dir, keep_work):
        source = _source(model, example_inputs, inputs=inputs, trust_pickle=trust_pickle, trust_graph=trust_graph)
        report = check_source(source, out_dir, export_options, validate_options)
    publish(report, out_dir)
    return report
