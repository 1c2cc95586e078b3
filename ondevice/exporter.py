"""Export: try each strategy of a route in order, keep the first whose artifact loads and passes
a quick parity probe, record why earlier ones were rejected, and write the manifest last.

Quantization is a step after that: each requested precision is made from the accepted float
artifact by that target's quantizers, tried in order like strategies, and installed beside it as
``model.<precision>.<ext>`` with its own manifest entry pointing back at the float one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ondevice.validators.parity import Tolerance, compare, widens

from . import progress
from .artifacts import Artifact, ArtifactRunner, Artifacts, ExportFailure, runtime_for
from .core import scratch as _scratch
from .core.errors import BadInputError, OndeviceError, first_line
from .core.quiet import quiet
from .core.scratch import remove_previous_artifacts, run_scratch
from .core.specs import load_samples, make_samples, samples_digest
from .core.vocab import ARTIFACT_SUFFIX
from .layout import match_io
from .options import ExportOptions
from .reference import SourceNoise, fill_source_outputs, reference_runner
from .runtimes import get_runner_class


def export_source(source, out_dir, options: ExportOptions, meanwhile=None) -> Artifacts:
    """Produce every requested target in ``out_dir``; targets no strategy can make go to ``failures``.

    Each quantized artifact (``options.quantize``) is made from the float one. The converters work in
    ``out_dir/.work``, removed at the end unless ``options.keep_work``; the previous export's artifacts
    are removed first. ``options.require`` keeps, per target, the first strategy whose artifact also runs
    whole on those accelerator backends (validators.compatibility); ``options.keep_float`` leaves layers
    of int8 artifacts in float until they pass. ``meanwhile(artifacts made so far)``, if given, is called
    once while this process would otherwise wait for a target converting in a process of its own.
    """
    with run_scratch(out_dir, options.keep_work):
        return _export_source(source, out_dir, options, meanwhile)


def _export_source(source, out_dir, options: ExportOptions, meanwhile=None) -> Artifacts:
    from ondevice.converters.registry import check_dynamic, check_route, get_strategy

    targets = list(options.targets)
    for target in targets:
        check_route(source.framework, target)  # before any work: "no route from keras to executorch"
    forced = get_strategy(options.strategy) if options.strategy else None
    dynamic = check_dynamic(dict(options.dynamic), source.inputs)  # a bad name or axis is the user's error
    precisions = list(options.quantize)
    threads = options.threads
    require = _requirements(options.require, targets)
    # Absolute: quantizers and converters run in subprocesses whose working directory is their own
    # scratch folder, where "out/model.tflite" names nothing (every subprocess quantizer failed so).
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    # OUT ends up holding this export's artifacts only; a source kept in OUT is not one to remove.
    _scratch.active().protect(source.path)
    remove_previous_artifacts(out_dir, keep=[source.path] if source.path else [])
    progress.stage("source", "running the example inputs")
    reference = fill_source_outputs(source, threads)
    _keep_float_request(options.keep_float, precisions, source, threads)
    calib = _calibration(source, options.calibration, precisions)
    made = _Made(
        out_dir=out_dir,
        reference=reference,
        threads=threads,
        calib=calib,
        options=options,
        noise=SourceNoise(lambda: reference_runner(source, threads), [source.example_feeds()], [reference]),
    )
    result = Artifacts(out_dir, source=source.to_json())
    if forced and len(targets) > 1 and any(forced.target != target for target in targets):
        raise BadInputError(f"--strategy {forced.name} makes {forced.target}, not every requested target")
    with contextlib.ExitStack() as early_work:
        early = _start_early(source, targets, forced, dynamic, early_work)
        done: dict[str, list] = {}
        # Targets converting in the background come last, so the others are made while they finish.
        for target in sorted(targets, key=lambda t: t in early):
            if target in early and meanwhile is not None:
                meanwhile([a for outcomes in done.values() for a in outcomes if isinstance(a, Artifact)])
                meanwhile = None
            outcome = _export_target(
                source,
                target,
                made,
                forced=forced,
                dynamic=dynamic,
                required=require.get(target, ()),
                early_job=early.get(target),
            )
            done[target] = [outcome, *(_quantize_target(source, outcome, p, made) for p in precisions)]
    for target in targets:  # reported in the order asked
        for made_one in done[target]:
            (result.items if isinstance(made_one, Artifact) else result.failures).append(made_one)
    result.write_manifest()
    _scratch.active().listed()
    return result


def _entry(name: str, status: str, reason: str | None, started: float) -> dict:
    """One strategy attempt for the manifest, with the seconds it took (conversion, load and probe)."""
    return {"strategy": name, "status": status, "reason": reason, "seconds": round(time.perf_counter() - started, 3)}


def _start_early(source, targets, forced, dynamic, stack: contextlib.ExitStack) -> dict:
    """Begin now the first strategy of each target that can start ahead of its turn (a conversion in a
    process of its own, overlapping the targets before it); ``{target: its ConversionJob}``.

    A start that fails leaves that strategy to convert in its turn as usual.
    """
    from ondevice.converters.registry import ConversionJob, first_strategy, starter_for
    from ondevice.core.isolate import close_spares

    jobs = {}
    for target in targets:
        first = first_strategy(source.framework, target, forced)
        if first is None:
            continue
        start = starter_for(first.name)
        if start is None:
            continue
        job = ConversionJob(source, target, _scratch.active().folder(f"{target}-{first.name}"), dynamic=dynamic)
        try:
            with quiet():
                job.early = start(job)
        except Exception:
            continue
        if job.early is not None:
            stack.callback(job.early.close)
            jobs[target] = job
    close_spares()  # begun before the source was loaded, for a framework it did not turn out to be
    return jobs


def _export_target(source, target, run: _Made, forced, dynamic, required=(), early_job=None):
    """The target's artifact from the first strategy that makes one, or an ExportFailure; ``early_job``:
    the job ``_start_early`` began for the first strategy."""
    from ondevice.converters.registry import ConversionJob, strategies_for

    strategies = [forced] if forced else strategies_for(source.framework, target)
    if forced and (forced.source, forced.target) != (source.framework, target):
        return ExportFailure(
            target,
            f"strategy {forced.name} converts {forced.source}->{forced.target}, not {source.framework}->{target}",
        )
    attempts, fallback = [], None
    for number, strat in enumerate(strategies, 1):
        progress.stage(target, f"converting with {strat.name} (strategy {number} of {len(strategies)})")
        started = time.perf_counter()
        job = early_job if number == 1 else None
        if job is None:
            job = ConversionJob(source, target, _scratch.active().folder(f"{target}-{strat.name}"), dynamic=dynamic)
        candidate, reason = _attempt(strat, job, run)
        if candidate is not None:
            candidate.strategy = strat.name
        if candidate is not None and candidate.probe.get("passed"):
            reason = _required_problem(candidate, required)
            if reason is None:
                attempts.append(_entry(strat.name, "accepted", None, started))
                _precision_problem(candidate)
                return _install(candidate, run.out_dir, attempts)
        attempts.append(_entry(strat.name, "rejected", reason, started))
        # A fallback that matches the source beats one that does not, whatever the backends say.
        if candidate is not None and (fallback is None or _matched(candidate) > _matched(fallback)):
            fallback = candidate
    if fallback is not None:
        # Every strategy converted but none matched the source (or ran on the required backends): keep
        # the best, and let validation fail it (exit 1) rather than hide a working-but-wrong export.
        if required and "require" not in fallback.options:
            _required_problem(fallback, required)  # recorded, so validation holds it to the requirement
        _precision_problem(fallback)
        return _install(fallback, run.out_dir, attempts)
    if not strategies:
        return ExportFailure(target, f"no strategy converts {source.framework} to {target}")
    summary = "; ".join(f"{a['strategy']}: {a['reason']}" for a in attempts)
    return ExportFailure(target, f"no strategy produced {target}: {summary}", attempts=tuple(attempts))


def _matched(candidate: Artifact) -> bool:
    return bool(candidate.probe.get("passed"))


def _requirements(require, targets) -> dict:
    """--require as {target: [backend]}, checked against the targets made and the backends known."""
    from ._compat import parse_requirements

    if isinstance(require, dict):
        require = [f"{t}:{','.join(b)}" for t, b in require.items()]
    return parse_requirements(require, targets)


def _required_problem(candidate: Artifact, backends) -> str | None:
    """Why a candidate that passed its probe does not run whole on the required backends (None: it does).

    The verdict per backend goes into the artifact's options (``require``), so the manifest says
    whether the kept artifact met the requirement.
    """
    if not backends:
        return None
    from ._compat import check_isolated, unmet

    verb = "takes" if len(backends) == 1 else "take"
    progress.stage(candidate.target, f"checking that {', '.join(backends)} {verb} every op")
    entries = check_isolated([(Path(candidate.path).resolve(), candidate.target)])[0]
    candidate.options["require"] = {b: not unmet(entries, [b]) for b in backends}
    problems = unmet(entries, backends)
    return "required backend: " + "; ".join(problems) if problems else None


def _attempt(strat, job, run: _Made):
    """Convert, load and probe; returns (candidate artifact or None, rejection reason or None)."""
    try:
        with quiet():
            converted = strat.convert(job)
    except Exception as exc:
        return None, f"conversion failed: {first_line(exc, 400)}"
    # A strategy makes the float artifact; quantizers start from it (its options say so for the manifest).
    options = {"quantize": None, "dynamic": job.dynamic}
    return _load_and_probe(converted, job, options, run)


def _load_and_probe(converted, job, options: dict, run: _Made):
    """Describe, load and run a fresh artifact of ``job`` (a conversion or quantization) on the example;
    (artifact or None, rejection reason or None). ``options`` go into the manifest; their ``quantize``
    is the precision the probe's tolerance is taken for."""
    try:
        with quiet():
            artifact, raw_runner = _describe(converted, job, options, run.threads)
            runner = ArtifactRunner(artifact, run.threads, prepared=raw_runner)
            actual = runner.run(job.source.example_feeds())
    except Exception as exc:
        return None, f"artifact did not load or run: {first_line(exc, 400)}"
    tol = Tolerance.default(options.get("quantize"))
    parity = compare([run.reference], [actual], tol)
    if not parity.passed and widens(tol):
        parity = compare([run.reference], [actual], tol, run.noise())
    worst = max((o.max_abs_err for o in parity.outputs), default=0.0)
    artifact.probe = {"passed": parity.passed, "max_abs_err": worst, "samples": 1}
    if not parity.passed:
        return artifact, "quick parity probe failed: " + "; ".join(parity.problems())
    return artifact, None


def _describe(converted, job, options: dict, threads: int):
    """An Artifact for a fresh conversion, its I/O matched to the source's, and its loaded runner."""
    options = {**options, "dynamic_kept": dict(getattr(converted, "dynamic_kept", None) or {})}
    source, target = job.source, job.target
    artifact = Artifact(
        target=target,
        path=Path(converted.path),
        strategy="",
        inputs=[],
        outputs=[],
        input_dtypes={},
        files=list(converted.files),
        versions=dict(converted.versions),
        notes=list(converted.notes),
        options=options,
        delegation=dict(getattr(converted, "delegation", None) or {}),
    )
    runner = get_runner_class(runtime_for(target))(artifact.path, threads=threads)
    artifact.inputs = match_io(source.inputs, runner.inputs, converted.channels_last, "input")
    artifact.outputs = match_io(source.outputs, runner.outputs, converted.channels_last, "output")
    artifact.input_dtypes = {spec.name: spec.dtype for spec in runner.inputs}
    return artifact, runner


def _install(artifact: Artifact, out_dir: Path, attempts: list, stem: str = "model") -> Artifact:
    """Move the winning files to OUT/<stem>.<ext> and seal their hashes."""
    final = out_dir / f"{stem}{ARTIFACT_SUFFIX[artifact.target]}"
    # Side files keep their names: the artifact refers to them by name (model.bin, external data).
    moves = [(artifact.path, final), *((side, out_dir / Path(side).name) for side in artifact.files)]
    _scratch.active().will_install([dest for _, dest in moves])  # a killed run's are removed next run
    mode = _scratch.file_mode()
    for src, dest in moves:
        shutil.move(str(src), dest)
        os.chmod(dest, mode)  # tools write 0600 temporaries; outputs get the mode a plain write gives
    moved = [dest for _, dest in moves[1:]]
    artifact.path, artifact.files = final, moved
    artifact.attempts = attempts
    artifact.seal()
    return artifact


# ---- quantization --------------------------------------------------------------------------------

# Generated calibration: this many samples, drawn with a seed apart from validation's default (0)
# so an int8 artifact is not judged on the very inputs it was calibrated on.
CALIBRATION_SAMPLES = 32
CALIBRATION_SEED = 1234
RANDOM_CALIBRATION_WARNING = (
    "warning: int8 calibration uses generated random inputs, a poor proxy for real data; "
    "pass --calibration data.npz with real inputs"
)


@dataclass(frozen=True)
class _Made:
    """What every strategy and quantizer of one export shares: where artifacts go, the source's outputs
    on its example (the probe's reference) and their rounding noise, the runtimes' threads, int8 calibration,
    and the options."""

    out_dir: Path
    reference: dict
    threads: int
    calib: _Calibration | None
    options: ExportOptions
    noise: SourceNoise


class _Calibration:
    """The calibration samples in the source's names and layout, and how they were obtained."""

    def __init__(self, samples: list[dict], info: dict):
        self.samples, self.info = samples, info


def _calibration(source, path, precisions: list[str]) -> _Calibration | None:
    """Samples for int8 calibration: from ``path`` (.npz), else generated with a warning on stderr."""
    if "int8" not in precisions:
        if path:
            progress.note("note: --calibration is only used by --quantize int8; ignored")
        return None
    if path:
        try:
            samples = load_samples(str(path), source.inputs)
        except BadInputError as exc:
            raise BadInputError(str(exc).replace("inputs file", "calibration file", 1)) from None
        info = {"kind": "file", "path": os.path.abspath(path), "samples": len(samples)}
        if not samples:
            raise BadInputError(f"calibration file {path} holds no samples (first axis is 0)")
    else:
        samples = make_samples(source.inputs, CALIBRATION_SAMPLES, CALIBRATION_SEED, source.example)
        info = {"kind": "random", "seed": CALIBRATION_SEED, "samples": len(samples)}
        progress.note(RANDOM_CALIBRATION_WARNING)
    info["sha256"] = samples_digest(samples)
    info["warnings"] = calibration_warnings(samples)
    for line in info["warnings"]:
        progress.note(f"warning: {line}")
    return _Calibration(samples, info)


def calibration_warnings(samples: list[dict]) -> list[str]:
    """Inputs whose calibration values never vary: ranges fitted to them cannot fit real inputs."""
    import numpy as np

    found = []
    for name in samples[0]:
        values = np.stack([np.asarray(s[name], dtype=np.float64) for s in samples])
        if values.size and float(values.max()) == float(values.min()):
            found.append(
                f"calibration input {name!r} is constant ({float(values.flat[0]):g} everywhere): "
                "int8 activation ranges fitted to it will not fit real inputs"
            )
    return found


def _quantize_target(source, float_artifact, precision: str, run: _Made):
    """The quantized artifact made from ``float_artifact``, or an ExportFailure saying why not."""
    from ondevice.converters.registry import ConverterCrashed, QuantizeJob, quantizers_for

    target = float_artifact.target
    if not isinstance(float_artifact, Artifact):
        return ExportFailure(target, f"no float {target} artifact to quantize", precision)
    quantizers = quantizers_for(target, precision, source.framework)
    if not quantizers:
        return ExportFailure(
            target, f"no quantizer makes {precision} {target} from a {source.framework} source", precision
        )
    int8_io, int8_kernels = run.options.int8_io, run.options.int8_kernels
    keep = run.options.keep_float if precision == "int8" else None
    if keep is not None and any(q.keeps_float for q in quantizers):
        quantizers = [q for q in quantizers if q.keeps_float]  # one quantizer makes the plain and mixed ones
    samples = _artifact_calibration(float_artifact, run.calib, run.threads) if precision == "int8" else []
    attempts, fallback, crashes = [], None, []
    for qz in quantizers:
        progress.stage(f"{target}[{precision}]", f"quantizing with {qz.name}")
        started = time.perf_counter()
        workdir = _scratch.active().folder(f"{target}-{precision}-{qz.name}")
        job = QuantizeJob(
            source=source,
            target=target,
            precision=precision,
            float_artifact=float_artifact,
            workdir=workdir,
            calibration=samples,
            int8_io=int8_io,
            int8_kernels=int8_kernels,
        )
        try:
            with quiet():
                converted = qz.quantize(job)
        except ConverterCrashed as exc:
            crashes.append(exc)
            attempts.append({**_entry(qz.name, "crashed", first_line(exc, 400), started), "signal": exc.signal_name})
            continue
        except Exception as exc:
            attempts.append(_entry(qz.name, "rejected", first_line(exc, 400), started))
            continue
        options = {"quantize": precision, "int8_io": int8_io if precision == "int8" else False}
        if precision in ("int8", "dynamic-int8"):
            options["int8_kernels"] = int8_kernels
        crashed = _survives(converted, target, run.threads)
        if crashed is not None:
            crashes.append(crashed)
            attempts.append({**_entry(qz.name, "crashed", str(crashed), started), "signal": crashed.signal_name})
            continue
        candidate, reason = _load_and_probe(converted, job, options, run)
        if candidate is not None:
            candidate.strategy = qz.name
            _mark_quantized(candidate, job, run)
            # Recorded whether or not the probe passed: the manifest must agree with the report.
            precision_problem = _precision_problem(candidate)
            if keep is not None and precision_problem is None:
                # Before the probe's verdict: a plain int8 that fails it is what --keep-float is for.
                candidate = _keep_float(candidate, qz, job, options, run)
                reason = None if candidate.probe.get("passed") else reason or "quick parity probe failed"
            reason = reason or precision_problem
        if candidate is not None and reason is None:
            attempts.append(_entry(qz.name, "accepted", None, started))
            return _install(candidate, run.out_dir, attempts, stem=f"model.{precision}")
        attempts.append(_entry(qz.name, "rejected", reason, started))
        fallback = fallback or candidate
    if fallback is not None:
        # Quantized but off: keep it so validation fails it (exit 1) with the numbers.
        return _install(fallback, run.out_dir, attempts, stem=f"model.{precision}")
    summary = "; ".join(f"{a['strategy']}: {a['reason']}" for a in attempts)
    if crashes:
        # A process killed by a signal is a fault (exit 4), not a model the converters refuse.
        crash = crashes[0].signal_name
        error = f"{precision} quantization crashed ({crash}): {summary}"
        return ExportFailure(target, error, precision, "error", tuple(attempts), crash)
    return ExportFailure(
        target, f"no quantizer produced {precision} {target}: {summary}", precision, attempts=tuple(attempts)
    )


def _survives(converted, target: str, threads: int):
    """None when the runtime loads and runs a quantized artifact in a child process, else why not.

    Float artifacts are loaded here directly (the runtimes take them); quantized kernels are where
    runtimes have died on load, and a crash in this process would end the whole run without a report.
    """
    from ondevice.converters.registry import ConverterCrashed

    from .core.isolate import SIGNAL, IsolatedFailure, call_isolated

    progress.stage(target, "loading the quantized artifact in a separate process")
    try:
        call_isolated(
            "ondevice.worker:smoke",
            {"path": str(Path(converted.path).resolve()), "target": target, "threads": threads},
            timeout=300,
        )
    except IsolatedFailure as exc:
        if exc.kind == SIGNAL:
            return ConverterCrashed(
                f"the {runtime_for(target)} runtime crashed loading it: {exc.reason}", exc.signal_name
            )
        # Anything else (an error, a timeout) the in-process probe meets again and reports.
    return None


def _keep_float_request(keep, precisions, source, threads) -> None:
    from .keep_float import check_request

    check_request(keep, precisions, source, threads)


def _keep_float(plain: Artifact, qz, job, options: dict, run: _Made) -> Artifact:
    """``plain``, or the same quantizer's artifact with the layers that break int8 parity kept in float
    (ondevice.keep_float); the artifact carries the record of what was tried. ``options``: the manifest
    options ``plain`` was probed with."""
    from dataclasses import replace

    from .keep_float import Search

    keep = run.options.keep_float
    if keep is None:
        return plain
    if not qz.keeps_float:
        plain.notes.append(f"--keep-float: {qz.name} cannot keep layers in float; plain int8")
        return plain
    rounds = []

    def requantize(names: tuple) -> Artifact:
        rounds.append(names)
        workdir = _scratch.active().folder(f"{job.target}-{job.precision}-{qz.name}-keep{len(rounds)}")
        progress.stage(
            f"{job.target}[{job.precision}]", f"re-quantizing with {len(names)} nodes in float (round {len(rounds)})"
        )
        with quiet():
            converted = qz.quantize(replace(job, workdir=workdir, keep_float=tuple(names)))
        artifact, reason = _load_and_probe(converted, job, options, run)
        if artifact is None:
            raise OndeviceError(reason)
        artifact.strategy = qz.name
        _mark_quantized(artifact, job, run)
        _precision_problem(artifact)
        return artifact

    progress.stage(f"{job.target}[{job.precision}]", "--keep-float: judging int8 on the calibration samples")
    search = Search(
        keep=keep,
        source=job.source,
        float_artifact=job.float_artifact,
        samples=run.calib.samples if run.calib else [],
        requantize=requantize,
        threads=run.threads,
    )
    return search.run(plain)


def _artifact_calibration(float_artifact: Artifact, calib: _Calibration | None, threads: int) -> list[dict]:
    """Calibration samples renamed, transposed and cast the way the float artifact takes them."""
    if calib is None:
        return []
    with quiet():
        runner = ArtifactRunner(float_artifact, threads)
    return [runner.feeds(sample) for sample in calib.samples]


def _precision_problem(artifact: Artifact) -> str | None:
    """Record the precision the artifact really has; a reason to reject it when that is not the one asked."""
    from ondevice.validators.precision import check_precision

    try:
        found = check_precision(artifact.path, artifact.target, artifact.quantize)
    except Exception as exc:  # an unreadable file is the runtime's to refuse, not ours
        artifact.precision = {"requested": artifact.quantize or "fp32", "found": None, "error": first_line(exc, 400)}
        return None
    artifact.precision = found.to_json()
    return None if found else found.problem


def _mark_quantized(artifact: Artifact, job, run: _Made) -> None:
    """The quantization ``job`` made ``artifact``: its precision, float sibling and calibration."""
    artifact.quantize = job.precision
    artifact.float_artifact = os.path.relpath(job.float_artifact.path, run.out_dir)
    if job.precision == "int8" and run.calib is not None:
        artifact.calibration = dict(run.calib.info)
