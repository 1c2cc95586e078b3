"""Export: try each strategy of a route in order, keep the first whose artifact loads and passes
a quick parity probe, record why earlier ones were rejected, and write the manifest last."""
from __future__ import annotations

import shutil
from pathlib import Path

from ._quiet import quiet
from .artifacts import Artifact, ArtifactRunner, Artifacts, runtime_for
from .errors import BadInputError, OndeviceError
from .layout import match_io
from .runtimes import SOURCE_RUNTIMES, get_runner_class
from .specs import TensorSpec
from validators.parity import Tolerance, compare


def reference_runner(source, threads: int = 1):
    """The runner that executes the source model itself."""
    if source.framework == "onnx":
        return get_runner_class("onnxruntime")(source.path, threads=threads)
    return get_runner_class(SOURCE_RUNTIMES[source.framework])(source, threads=threads)


def fill_source_outputs(source, threads: int = 1) -> dict:
    """Run the source once on its example to learn its outputs; returns those outputs."""
    feeds = source.example_feeds()
    try:
        with quiet():
            runner = reference_runner(source, threads)
            result = runner.run(feeds)
    except OndeviceError:
        raise
    except Exception as exc:
        raise BadInputError(f"the source model failed on its example inputs: {type(exc).__name__}: "
                            f"{_one_line(exc)}") from None
    if source.framework == "onnx":
        source.outputs = list(runner.outputs)
    else:
        source.outputs = [TensorSpec(name, tuple(value.shape), str(value.dtype)) for name, value in result.items()]
    return result


def _one_line(exc: BaseException) -> str:
    lines = [l for l in str(exc).strip().splitlines() if l.strip()]
    return (lines[0] if lines else type(exc).__name__)[:400]


def export_source(source, targets, out_dir, quantize=None, strategy=None, dynamic=None,
                  calibration=None, threads: int = 1) -> Artifacts:
    """Produce every requested target in ``out_dir``; targets no strategy can make go to ``failures``."""
    from converters.registry import check_target, get_strategy

    targets = [check_target(t) for t in targets]
    forced = get_strategy(strategy) if strategy else None
    if quantize is not None:
        raise BadInputError(f"--quantize {quantize} is not supported yet; export at float32")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = fill_source_outputs(source, threads)
    result = Artifacts(out_dir, source=source.to_json())
    for target in targets:
        if forced and forced.target != target and len(targets) > 1:
            raise BadInputError(f"--strategy {forced.name} makes {forced.target}, not every requested target")
        outcome = _export_target(source, target, out_dir, forced, reference, dynamic or {}, threads)
        if isinstance(outcome, Artifact):
            result.items.append(outcome)
        else:
            result.failures.append(outcome)
    shutil.rmtree(out_dir / ".work", ignore_errors=True)
    result.write_manifest()
    return result


def _export_target(source, target, out_dir, forced, reference, dynamic, threads):
    from converters.registry import ConversionJob, strategies_for

    strategies = [forced] if forced else strategies_for(source.framework, target)
    if forced and (forced.source, forced.target) != (source.framework, target):
        return {"target": target, "error": f"strategy {forced.name} converts {forced.source}->{forced.target}, "
                f"not {source.framework}->{target}", "attempts": []}
    attempts, fallback = [], None
    for strat in strategies:
        workdir = out_dir / ".work" / f"{target}-{strat.name}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        job = ConversionJob(source, target, workdir, dynamic=dynamic)
        candidate, reason = _attempt(strat, job, reference, threads)
        if candidate is not None:
            candidate.strategy = strat.name
        if candidate is not None and candidate.probe.get("passed"):
            attempts.append({"strategy": strat.name, "status": "accepted", "reason": None})
            return _install(candidate, out_dir, attempts)
        attempts.append({"strategy": strat.name, "status": "rejected", "reason": reason})
        if candidate is not None and fallback is None:
            fallback = candidate
    if fallback is not None:
        # Every strategy converted but none matched the source: keep the first, and let
        # validation fail it (exit 1) rather than hide a working-but-wrong export.
        return _install(fallback, out_dir, attempts)
    if not strategies:
        return {"target": target, "error": f"no strategy converts {source.framework} to {target}", "attempts": []}
    summary = "; ".join(f"{a['strategy']}: {a['reason']}" for a in attempts)
    return {"target": target, "error": f"no strategy produced {target}: {summary}", "attempts": attempts}


def _attempt(strat, job, reference, threads):
    """Convert, load and probe; returns (candidate artifact or None, rejection reason or None)."""
    try:
        with quiet():
            converted = strat.convert(job)
    except Exception as exc:
        return None, f"conversion failed: {_one_line(exc)}"
    try:
        with quiet():
            artifact = _describe(converted, job, threads)
            runner = ArtifactRunner(artifact, threads)
            actual = runner.run(job.source.example_feeds())
    except Exception as exc:
        return None, f"artifact did not load or run: {_one_line(exc)}"
    parity = compare([reference], [actual], Tolerance.default(job.quantize))
    worst = max((o.max_abs_err for o in parity.outputs), default=0.0)
    artifact.probe = {"passed": parity.passed, "max_abs_err": worst, "samples": 1}
    if not parity.passed:
        return artifact, "quick parity probe failed: " + "; ".join(parity.problems())
    return artifact, None


def _describe(converted, job, threads) -> Artifact:
    """An Artifact for a fresh conversion, its I/O matched to the source's."""
    artifact = Artifact(job.target, Path(converted.path), "", [], [], {}, files=list(converted.files),
                        versions=dict(converted.versions), notes=list(converted.notes),
                        options={"quantize": job.quantize, "dynamic": job.dynamic})
    runner = get_runner_class(runtime_for(job.target))(artifact.path, threads=threads)
    artifact.inputs = match_io(job.source.inputs, runner.inputs, converted.channels_last, "input")
    artifact.outputs = match_io(job.source.outputs, runner.outputs, converted.channels_last, "output")
    artifact.input_dtypes = {spec.name: spec.dtype for spec in runner.inputs}
    return artifact


_SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


def _install(artifact: Artifact, out_dir: Path, attempts: list) -> Artifact:
    """Move the winning files to OUT/model.<ext> and seal their hashes."""
    final = out_dir / f"model{_SUFFIX[artifact.target]}"
    shutil.move(str(artifact.path), final)
    moved = []
    for side in artifact.files:
        # Side files keep their names: the artifact refers to them by name (model.bin, external data).
        dest = out_dir / Path(side).name
        shutil.move(str(side), dest)
        moved.append(dest)
    artifact.path, artifact.files = final, moved
    artifact.attempts = attempts
    artifact.seal()
    return artifact
