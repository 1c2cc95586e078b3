"""validate and check: run source and artifacts on the same samples, judge, and build the report."""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ondevice.validators import latency as latency_check
from ondevice.validators.parity import (
    CALIBRATION_HINT,
    NOISE_CAP,
    NOISE_FACTOR,
    Tolerance,
    compare,
    compare_vs_float,
    constant_artifact_passes,
    widens,
)
from ondevice.validators.precision import check_precision

from . import progress
from .artifacts import Artifact, Artifacts, ExportFailure
from .core.errors import input_error, one_line
from .core.isolate import TIMEOUT, IsolatedFailure, call_isolated
from .core.lazy import REPORTED_PACKAGES, package_versions
from .core.quiet import quiet
from .core.samples import load_samples_file, save_samples
from .core.specs import load_samples, make_samples, samples_digest
from .core.vocab import INT8_PRECISIONS
from .exporter import export_source
from .options import ExportOptions, ValidateOptions
from .reference import SourceNoise, fill_source_outputs, reference_runner
from .report import Report, TargetResult, environment
from .timing import alone as timed_alone  # a zoo run times one model at a time


def installed_versions() -> dict:
    return package_versions(*REPORTED_PACKAGES)


def _samples(source, options: ValidateOptions):
    if options.inputs_file:
        data = load_samples(str(options.inputs_file), source.inputs)
        return data, {"kind": "file", "path": str(options.inputs_file), "seed": None, "samples": len(data)}
    data = make_samples(source.inputs, options.samples, options.seed, source.example)
    return data, {"kind": "random", "seed": options.seed, "samples": len(data)}


def _reference(source, samples, threads):
    if not source.outputs:
        fill_source_outputs(source, threads)
    runner = reference_runner(source, threads)
    try:
        with quiet():
            return runner, [runner.run(s) for s in samples]
    except Exception as exc:
        raise input_error(f"the source model failed on the samples: {type(exc).__name__}: {exc}", exc) from exc


def validate_artifacts(source, artifacts: Artifacts, options: ValidateOptions | None = None) -> Report:
    """Judge every artifact against the source on the same seeded samples (``options``: the defaults if None).

    The source runs here; each artifact runs in a worker process of its own, so a runtime that
    crashes or hangs marks only its target ``error``. ``options.atol``/``rtol`` override each
    artifact's own precision defaults. A quantized artifact is also compared with its
    float sibling (``parity_vs_float``), separating quantization error from conversion error.
    int8 artifacts are also run on an emulated AVX2 CPU where this one has VNNI/AMX kernels
    (``isa_checks``; ``options.emulate_cpu=False`` records the check as not run).
    """
    options = options or ValidateOptions()
    started = time.perf_counter()
    threads, tolerance = options.threads, options.tolerance
    data, inputs_info = _samples(source, options)
    inputs_info["sha256"] = samples_digest(data)
    progress.stage("source", f"running {len(data)} samples and timing")
    ref_runner, reference = _reference(source, data, threads)
    with quiet(), timed_alone():
        source_latency = latency_check.measure(
            lambda: ref_runner.run(data[0]),
            threads,
            runs=options.runs,
            warmup=options.warmup,
            budget_s=options.budget_s,
        ).to_json()
    results, explain_budget = [], EXPLAIN_BUDGET_S
    with tempfile.TemporaryDirectory(prefix="ondevice-validate-") as tmp:
        samples_path = Path(tmp) / "samples.npz"
        save_samples(samples_path, data)
        other = _other_shape(source, artifacts, ref_runner, seed=options.seed, path=Path(tmp) / "other_shape.npz")
        outputs = {}
        noise = SourceNoise(lambda: ref_runner, data, reference)
        emulated: list[_Emulated] = []  # int8 artifacts to run again on the emulated CPU, after the native runs
        for index, artifact in enumerate(artifacts):
            tol = replace(Tolerance.default(artifact.quantize), **(tolerance or {}))
            if tolerance and "atol" in tolerance and tol.precision == "fp32":
                tol = replace(tol, atol_of_peak=False)  # --atol on a float artifact means that many units
            job = _WorkerJob(
                out_dir=artifacts.out_dir,
                index=index,
                samples_path=samples_path,
                outputs_path=Path(tmp) / f"outputs{index}.npz",
                options=options,
                extra_samples_path=other.path if other and other.fits(artifact) else None,
                external=artifacts.external,
            )
            progress.stage(_label(artifact), f"validating: {len(data)} samples, then timing")
            judged_at = time.perf_counter()
            result = _judge(artifact, job, reference, tol, noise)
            result.timings.update(_export_timings(artifact), worker=round(time.perf_counter() - judged_at, 3))
            if other:
                other.judge(result, artifact, job, tol)
            if result.status != "error":
                outputs[artifact.path.resolve()] = load_samples_file(job.outputs_path)
            _vs_float(result, artifacts.float_sibling(artifact), outputs)
            _check_precision(result, artifact, options.allow_precision_change)
            _keep_float(result, artifact)
            if options.explain:
                with _stage(result, "explain"):
                    explain_budget = _explain(result, source, artifact, (data[0], threads), explain_budget)
            if artifact.quantize in INT8_PRECISIONS:
                emulate = _isa_checks(result, artifact, job, (reference, tol), context=(artifacts, outputs))
                if emulate is not None:
                    emulated.append(emulate)
            if result.latency and source_latency["p50_ms"] > 0:
                result.latency["speedup_vs_source"] = source_latency["p50_ms"] / result.latency["p50_ms"]
            result.source_latency = source_latency
            results.append(result)
        _emulated_checks(emulated)
    _compatibility(results, artifacts, options.timeout_s)
    _keep_float_latency(results, artifacts)
    for failure in artifacts.failures:
        results.append(
            TargetResult(
                failure.target,
                failure.status,
                failure.quantize,
                error=failure.error,
                timings=_export_timings(failure),
            )
        )
    versions = {**installed_versions(), **ref_runner.versions()}
    return Report(
        source=source.to_json(),
        environment=environment(threads, versions),
        inputs=inputs_info,
        targets=results,
        allow_inconclusive=options.allow_inconclusive,
        run=run_facts(started),
    )


OTHER_SHAPE_SAMPLES = 3
OTHER_SHAPE_GROWTH = 2  # each dynamic axis is validated at its example size + this


@dataclass
class _OtherShape:
    """Samples at a second shape for the axes some artifact kept dynamic, and the source's outputs
    (``refused``: why there are none -- the source itself would not run at that shape)."""

    path: Path | None
    axes: dict  # input name -> axes that changed
    shapes: dict  # input name -> the second shape
    reference: list
    refused: str | None = None

    def fits(self, artifact) -> bool:
        kept = artifact.options.get("dynamic_kept") or {}
        return all(set(axes) <= set(kept.get(name, ())) for name, axes in self.axes.items())

    def judge(self, result: TargetResult, artifact, job, tol) -> None:
        """Add this shape's parity to ``result``; a failure here fails the target."""
        entry: dict[str, Any] = {"inputs": {n: list(s) for n, s in self.shapes.items()}}
        if not self.fits(artifact):
            entry.update(checked=False, reason="the artifact fixed these axes at export (see the manifest)")
        elif self.refused:
            entry.update(checked=False, reason=self.refused)
        elif result.status != "error" and job.extra_outputs_path.exists():
            parity = compare(self.reference, load_samples_file(job.extra_outputs_path), tol)
            entry.update(checked=True, parity=parity.to_json())
            if not parity.passed and result.status in ("passed", "inconclusive"):
                result.status = "failed"
                result.error = f"parity at shape {entry['inputs']}: " + "; ".join(parity.problems())
        elif result.status == "error":
            entry.update(checked=False, reason="the artifact did not run (see the target's error)")
        else:
            entry.update(checked=False, reason="the artifact's worker returned no outputs at this shape")
        result.shapes = [entry]


def _other_shape(source, artifacts, ref_runner, seed: int, path: Path) -> _OtherShape | None:
    """Samples with every axis an artifact kept dynamic grown by OTHER_SHAPE_GROWTH; None when no artifact
    kept one. A source that refuses that shape gives no samples and the reason, recorded as not checked."""
    axes: dict[str, set[int]] = {}
    for artifact in artifacts:
        for name, kept in (artifact.options.get("dynamic_kept") or {}).items():
            axes.setdefault(name, set()).update(kept)
    if not axes:
        return None
    specs = [
        replace(
            s, shape=tuple(d + OTHER_SHAPE_GROWTH if i in axes.get(s.name, ()) else d for i, d in enumerate(s.shape))
        )
        for s in source.inputs
    ]
    samples = make_samples(specs, OTHER_SHAPE_SAMPLES, seed + 1)
    axes_kept, shapes = {n: sorted(a) for n, a in axes.items()}, {s.name: s.shape for s in specs if s.name in axes}
    try:
        with quiet():
            reference = [ref_runner.run(s) for s in samples]
    except Exception as exc:  # nothing to compare the artifact against: a check not run, and why
        why = f"the source model runs only at its example shape: {one_line(exc)}"
        return _OtherShape(None, axes_kept, shapes, [], refused=why)
    save_samples(path, samples)
    return _OtherShape(path, axes_kept, shapes, reference)


EXPLAIN_BUDGET_S = 300.0  # for every failing target of one run together


def _explain(result: TargetResult, source, artifact, run_on: tuple, budget: float) -> float:
    """Locate the first diverging layer of a target that failed parity, running ``run_on`` (a sample and
    the thread count); returns the budget left.

    Only a parity miss is explained (a precision or latency failure has no diverging layer); the
    verdict never depends on it, and once the budget is spent the rest are noted, not explained.
    """
    from .explain import explain_within

    if result.status != "failed" or (result.parity or {}).get("passed", True):
        return budget
    if budget <= 0:
        result.divergence = {"note": f"not explained: the {EXPLAIN_BUDGET_S:.0f} s budget was spent on other targets"}
        return budget
    progress.stage(_label(artifact), "explaining: every intermediate tensor of source and artifact")
    sample, threads = run_on
    result.divergence = explain_within(source, artifact, sample, threads=threads, budget_s=budget)
    return budget - result.divergence.get("seconds", 0.0)


def _compatibility(results: list, artifacts: Artifacts, timeout_s: float) -> None:
    """Which ops each accelerator backend takes, per artifact (one worker for all); a requirement
    recorded at export (``--require``, also binding the quantized siblings) that is not met fails the target."""
    from ._compat import CHECK_TIMEOUT_S, check_isolated, checked_before, unmet

    items = _compat_items(artifacts.items)
    count = sum(not checked_before(*item) for item in items)
    progress.stage("compatibility", f"checking {count} artifact{'s' * (count != 1)} against accelerator backends")
    found = check_isolated(items, min(timeout_s, CHECK_TIMEOUT_S))
    for result, artifact, entries in zip(results, artifacts.items, found, strict=True):
        result.compatibility = entries or None
        sibling = artifacts.float_sibling(artifact)
        required = (artifact.options.get("require") or (sibling.options.get("require") if sibling else None)) or {}
        problems = unmet(entries, list(required))
        if problems and result.status in ("passed", "inconclusive"):
            result.status = "failed"
            result.error = "; ".join(filter(None, [result.error, "required backend: " + "; ".join(problems)]))
        elif problems:
            result.notes.append("required backend: " + "; ".join(problems))


def _compatibility_ahead(made: list, options: ValidateOptions) -> None:
    """Check the artifacts ``made`` so far while the export waits for a target converting in a process of its
    own; the validation's compatibility check then reuses these entries (_compat.check_isolated)."""
    from ._compat import CHECK_TIMEOUT_S, check_isolated

    if made:
        progress.stage("compatibility", f"checking {', '.join(map(_label, made))} while the export waits")
        check_isolated(_compat_items(made), min(options.timeout_s, CHECK_TIMEOUT_S))


def _compat_items(artifacts) -> list[tuple[Path, str]]:
    return [(a.path.resolve(), a.target) for a in artifacts]


def _keep_float(result: TargetResult, artifact) -> None:
    """--keep-float: what was kept in float goes into the result; a search that ended without int8 parity,
    or layers asked for that the artifact could not keep, fail the target (the record has every round)."""
    record = artifact.keep_float
    if not record:
        return
    result.keep_float = dict(record)
    problem = None
    if record.get("mode") == "auto" and not record.get("passed"):
        problem = (
            f"--keep-float auto: int8 still misses its tolerances after {len(record.get('rounds', [])) - 1} "
            f"re-quantizations ({record.get('stopped')}); the rounds tried are in keep_float.rounds"
        )
    elif record.get("missing"):
        problem = f"--keep-float: {record.get('stopped')}"
    if problem is None:
        return
    if result.status in ("passed", "inconclusive"):
        result.status = "failed"
    result.error = "; ".join(filter(None, [result.error, problem]))


def _keep_float_latency(results: list, artifacts: Artifacts) -> None:
    """Beside export's cost figures, the p50 this validation measured for the artifact and its float sibling."""
    by_path = {Path(r.artifact).resolve(): r for r in results if r.artifact}
    for result, artifact in zip(results, artifacts.items, strict=True):
        sibling = artifacts.float_sibling(artifact)
        float_result = by_path.get(sibling.path.resolve()) if sibling is not None else None
        if result.keep_float is None or float_result is None:
            continue
        result.keep_float["validation_p50_ms"] = {
            "mixed": (result.latency or {}).get("p50_ms"),
            "float": (float_result.latency or {}).get("p50_ms"),
        }


def _label(artifact) -> str:
    return f"{artifact.target}[{artifact.quantize}]" if artifact.quantize else artifact.target


def _vs_float(result: TargetResult, sibling, outputs: dict) -> None:
    """Quantization error alone: a quantized artifact against its float sibling's outputs."""
    if sibling is None or result.status == "error" or result.artifact is None or result.quantize is None:
        return
    float_outputs = outputs.get(sibling.path.resolve())
    quantized = outputs.get(Path(result.artifact).resolve())
    if float_outputs is not None and quantized is not None:
        result.parity_vs_float = compare_vs_float(float_outputs, quantized, result.quantize).to_json()


def _isa_checks(result: TargetResult, artifact, job: _WorkerJob, judged: tuple, context: tuple) -> _Emulated | None:
    """int8 kernels differ by CPU class: record the native proof and, where possible, queue an AVX2 one
    (``judged``: the source's outputs and the artifact's tolerance; ``context``: every artifact of the
    run and the native outputs of those that ran). Returns the queued check, or None.

    On a CPU with VNNI/AMX the artifact runs again under an emulator whose CPUID says AVX2 without
    VNNI; parity there is judged by the same tolerance, and a miss fails the target (int8 that holds
    only on the machine that proved it is not portable). Nothing is skipped silently: a check that
    could not run says why.
    """
    from .cpu import EMULATED_CPU, cpu_info, emulator_command

    artifacts, outputs = context
    native = cpu_info()
    result.isa_checks = [
        {
            "isa_class": native["isa_class"],
            "how": "native",
            "checked": result.status != "error",
            "passed": result.status in ("passed", "inconclusive"),
        }
    ]
    if native["isa_class"] == EMULATED_CPU["isa_class"]:
        return None  # this CPU is of the AVX2 class itself: the native run is that proof
    launcher, why = emulator_command(native)
    entry = {"isa_class": EMULATED_CPU["isa_class"], "how": "emulated", "checked": False}
    result.isa_checks.append(entry)
    sibling = artifacts.float_sibling(artifact)
    float_native = outputs.get(sibling.path.resolve()) if sibling is not None else None
    emulate = job.options.emulate_cpu
    if launcher is None or not emulate or result.status == "error" or sibling is None or float_native is None:
        entry["reason"] = (
            why
            if launcher is None
            else "turned off (--no-emulate-cpu)"
            if not emulate
            else "the native run failed"
            if result.status == "error"
            else "no float sibling to check the emulator against"
        )
        return None
    entry["how"] = f"emulated ({' '.join([Path(launcher[0]).name, *launcher[1:]])})"
    return _Emulated(entry, result, artifact, job, judged, artifacts.items.index(sibling), launcher, float_native)


# Samples the float control runs on the emulated CPU. One forward pass runs every kernel the artifact has,
# which is what a mistranslation shows in; more would cost much: qemu translates float SIMD 10-40x slower
# than integer SIMD (ConvNeXtTiny, one sample: float 6-9 s, int8 0.2-0.9 s per artifact).
CONTROL_SAMPLES = 1


@dataclass
class _Emulated:
    """One int8 artifact's queued run on the emulated CPU: where its verdict goes (``entry``, ``result``),
    what judges it (``judged``: the source's outputs and the tolerance) and its control (the float
    sibling's index in the manifest and that sibling's native outputs)."""

    entry: dict
    result: TargetResult
    artifact: Artifact
    job: _WorkerJob
    judged: tuple
    sibling_index: int
    launcher: list
    float_native: list

    def paths(self) -> list[Path]:
        """Where the emulated worker writes the int8 artifact's outputs and then its float sibling's."""
        return [_emulated_outputs(self.job, i) for i in (self.job.index, self.sibling_index)]


def _emulated_outputs(job: _WorkerJob, index: int) -> Path:
    """The emulated outputs of manifest item ``index``: one file per item, however many int8 artifacts
    share it as their float sibling."""
    return job.outputs_path.with_name(f"avx2-outputs{index}.npz")


def _emulated_checks(queued: list[_Emulated]) -> None:
    """Run every queued int8 artifact and its float sibling in one worker on the emulated CPU.

    Every process pays its imports and each runtime's set-up again under translation (OpenVINO
    compiling ConvNeXtTiny's IR: 5-12 s there, 0.4-0.8 s natively), so one process serves the whole
    run. When that process dies, each artifact runs again alone, so one runtime's crash under the emulator
    is charged only to its own target (a timeout is not retried: it would time out again).
    """
    if not queued:
        return
    progress.stage(", ".join(_label(q.artifact) for q in queued), "re-running on an emulated AVX2 CPU")
    started = time.perf_counter()
    try:
        ran = _run_emulated(queued)
    except IsolatedFailure as failure:
        ran = []
        for q in queued:
            reason = failure.reason
            if len(queued) > 1 and failure.kind != TIMEOUT:  # alone, a crash is charged to its own target
                try:
                    ran.extend(_run_emulated([q]))
                    continue
                except IsolatedFailure as alone:
                    reason = alone.reason
            q.entry["reason"] = f"the emulated run failed: {reason}"
    seconds = round(time.perf_counter() - started, 3)
    for q in queued:
        q.result.timings["isa_check"] = seconds  # one emulated worker for the run: its targets share it
    for q, runtime in ran:
        _judge_emulated(q, runtime)


def _run_emulated(queued: list[_Emulated]) -> list[tuple[_Emulated, str]]:
    """One emulated worker for ``queued``; returns each with the runtime that ran its int8 artifact.
    int8 artifacts run every sample, their float siblings (the control, shared where several artifacts
    have the same one) ``CONTROL_SAMPLES``."""
    int8 = [q.job.index for q in queued]
    indices = list(dict.fromkeys([*int8, *(q.sibling_index for q in queued)]))
    job = queued[0].job
    facts = call_isolated(
        "ondevice.worker:run_artifact",
        {
            "out_dir": str(Path(job.out_dir).resolve()),
            "indices": indices,
            "samples_path": str(job.samples_path),
            "outputs_paths": [str(_emulated_outputs(job, i)) for i in indices],
            "threads": job.threads,
            "limits": [None if i in int8 else CONTROL_SAMPLES for i in indices],
        },
        timeout=job.timeout_s * len(queued),
        launcher=queued[0].launcher,
    )
    runtimes = dict(zip(indices, facts["runtimes"], strict=True))
    return [(q, runtimes[q.job.index]) for q in queued]


def _judge_emulated(q: _Emulated, runtime: str) -> None:
    """The float sibling is the control: an emulator can mistranslate an instruction (qemu did, on an
    unrolled LSTM's float IR). When the sibling does not reproduce its native outputs to fp32
    tolerance, the int8 figure from the same emulator is no evidence either way, and the check is
    recorded as not run. Otherwise a miss fails a target whose native parity held."""
    from .cpu import EMULATED_CPU

    reference, tol = q.judged
    entry, result = q.entry, q.result
    int8_path, float_path = q.paths()
    emulated_float = load_samples_file(float_path)
    control = compare(q.float_native[: len(emulated_float)], emulated_float, Tolerance.default(None))
    entry["control_max_abs_err"] = max((o.max_abs_err for o in control.outputs), default=0.0)
    entry["control_samples"] = len(emulated_float)
    if not control.passed:
        entry["reason"] = (
            f"the emulator did not reproduce the float artifact (max abs err "
            f"{entry['control_max_abs_err']:.3g}), so its int8 figure would prove nothing"
        )
        return
    parity = compare(reference, load_samples_file(int8_path), tol)
    entry.update(checked=True, passed=parity.passed, runtime=runtime, parity=parity.to_json())
    if not parity.passed and result.status in ("passed", "inconclusive"):
        # Parity held natively, so the calibration is not what broke: the kernels of this CPU class are.
        problems = "; ".join(p.replace(f"; {CALIBRATION_HINT}", "") for p in parity.problems())
        result.status = "failed"
        result.error = (
            f"parity on an emulated {EMULATED_CPU['isa_class']} CPU ({EMULATED_CPU['model']}, no VNNI): "
            + problems
            + (
                "; int8 that holds only with VNNI: export with --int8-kernels portable"
                if q.artifact.options.get("int8_kernels") == "vnni"
                else ""
            )
        )


@contextmanager
def _stage(result: TargetResult, name: str):
    """Add the seconds the block took to ``result.timings[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        result.timings[name] = round(result.timings.get(name, 0.0) + time.perf_counter() - started, 3)


def _export_timings(made: Artifact | ExportFailure) -> dict:
    """Seconds per strategy tried (conversion, load and probe) and their sum, from the manifest's attempts."""
    timed = {f"strategy:{a['strategy']}": a["seconds"] for a in made.attempts if a.get("seconds") is not None}
    return {**timed, "export": round(sum(timed.values()), 3)} if timed else {}


def run_facts(started: float) -> dict:
    """The whole run's wall time and the peak resident memory of this process and its children."""
    import resource

    peak_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    return {"wall_s": round(time.perf_counter() - started, 3), "peak_rss_mb": round(peak_kib / 1024, 1)}


def _check_precision(result: TargetResult, artifact, allowed: bool) -> None:
    """An artifact whose real precision differs from the one asked for fails, unless allowed.

    Read from the file now, not from the manifest: the check must hold for artifacts that were
    re-saved by other tools after export.
    """
    try:
        found = check_precision(artifact.path, artifact.target, artifact.quantize)
    except Exception as exc:  # an unreadable file is the runtime's to report; record the check as not run
        why = f"{one_line(exc)}"
        result.precision = {"requested": artifact.quantize or "fp32", "found": None, "checked": False, "reason": why}
        result.notes.append(f"precision not inspected: {why}")
        return
    result.precision = found.to_json()
    if found.passed or result.status == "error":
        return
    problem = found.problem
    if allowed:
        result.notes.append(f"precision change allowed: {problem}")
        return
    result.status = "failed"
    result.error = "; ".join(filter(None, [result.error, f"precision: {problem}"]))


@dataclass(frozen=True)
class _WorkerJob:
    """One artifact's run in a worker process: which artifact, where samples and outputs go, and how."""

    out_dir: Path
    index: int
    samples_path: Path
    outputs_path: Path
    options: ValidateOptions
    extra_samples_path: Path | None = None
    external: bool = False  # the manifest describes files made elsewhere (byo.py)

    @property
    def extra_outputs_path(self) -> Path:
        return self.outputs_path.with_name(f"extra-{self.outputs_path.name}")

    @property
    def threads(self) -> int:
        return self.options.threads

    @property
    def timeout_s(self) -> float:
        return self.options.timeout_s

    def run(self) -> dict:
        # Absolute paths: the worker runs in a scratch folder, not the caller's working directory.
        kwargs = {
            "out_dir": str(Path(self.out_dir).resolve()),
            "index": self.index,
            "samples_path": str(self.samples_path),
            "outputs_path": str(self.outputs_path),
            "timing": {
                "threads": self.threads,
                "runs": self.options.runs,
                "warmup": self.options.warmup,
                "budget_s": self.options.budget_s,
            },
        }
        if self.extra_samples_path:
            kwargs["extra"] = {
                "samples_path": str(self.extra_samples_path),
                "outputs_path": str(self.extra_outputs_path),
            }
        if self.external:
            kwargs["external"] = True
        return call_isolated("ondevice.worker:measure_artifact", kwargs, timeout=self.timeout_s)


def _noise_notes(missed: set, parity, noise: dict) -> list[str]:
    """What the source's rounding noise did to the atol of each output that ``missed`` its default one."""
    notes = []
    for o in parity.outputs:
        if o.name not in missed or o.name not in noise:
            continue
        if noise[o.name] is None:
            notes.append(f"{o.name}: the source does not reproduce its own output on the same inputs; atol kept")
        else:
            notes.append(
                f"{o.name}: the source's own output moves by {o.source_noise:.3g} when its float inputs move by "
                f"one ulp; fp32 atol {o.atol:.3g} ({NOISE_FACTOR:g}x that, at most {NOISE_CAP:g} of the peak)"
            )
    return notes


def _judge(artifact, job: _WorkerJob, reference, tol, noise: SourceNoise | None = None) -> TargetResult:
    result = TargetResult(
        artifact.target,
        "error",
        artifact.quantize,
        artifact=str(artifact.path.resolve()),
        strategy=artifact.strategy,
        size_bytes=artifact.size_bytes,
    )
    result.io = {"inputs": [m.to_json() for m in artifact.inputs], "outputs": [m.to_json() for m in artifact.outputs]}
    result.delegation = artifact.delegation or None
    try:
        facts = job.run()
    except IsolatedFailure as failure:
        result.error = f"runtime worker failed: {failure.reason}"
        return result
    actual = load_samples_file(job.outputs_path)
    result.runtime, result.latency = facts["runtime"], facts["latency"]
    result.timings.update({name: round(seconds, 3) for name, seconds in (facts.get("stages") or {}).items()})
    result.footprint = {"size_bytes": artifact.size_bytes, **facts["footprint"]}
    parity = compare(reference, actual, tol)
    if not parity.passed and noise is not None and widens(tol):
        missed = {o.name for o in parity.outputs if not o.passed}
        parity = compare(reference, actual, tol, noise())
        result.notes.extend(_noise_notes(missed, parity, noise()))
    result.parity = parity.to_json()
    # Judged by the artifact's full tolerance (peak-relative atol, cosine, SNR for quantized ones).
    dead = constant_artifact_passes(reference, tol)
    if not parity.passed:
        result.status, result.error = "failed", "parity: " + "; ".join(parity.problems())
    elif dead:
        result.status, result.inconclusive = "inconclusive", sorted(dead)
        result.error = "parity inconclusive: " + "; ".join(dead.values())
    else:
        result.status = "passed"
    return result


def check_source(source, out_dir, export: ExportOptions, validate: ValidateOptions | None = None) -> Report:
    """Export then validate; returns the Report, which the caller publishes (``publish.publish``) after its gate.

    Converters and runtimes work in OUT/.work, removed at the end unless ``export.keep_work``;
    ``validate`` is the defaults if None.
    """
    from ._paths import REPORT_FILES, clear_previous, output_folder
    from .core.scratch import run_scratch

    started = time.perf_counter()
    with run_scratch(out_dir, export.keep_work):
        # A check that fails part-way must not leave the previous run's verdict in out_dir.
        clear_previous(output_folder(out_dir), (*REPORT_FILES, "manifest.json"))
        validate = validate or ValidateOptions()
        artifacts = export_source(source, out_dir, export, meanwhile=lambda made: _compatibility_ahead(made, validate))
        report = validate_artifacts(source, artifacts, validate)
        report.run = {**run_facts(started), "validate_s": report.run["wall_s"]}
    return report
