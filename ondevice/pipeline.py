"""validate and check: run source and artifacts on the same samples, judge, and build the report."""
from __future__ import annotations

import importlib.metadata as metadata
import os
from pathlib import Path

from ._quiet import quiet
from .artifacts import ArtifactRunner, Artifacts
from .errors import BadInputError, OndeviceError
from .exporter import export_source, fill_source_outputs, reference_runner
from .report import Report, TargetResult, environment
from .specs import load_samples, make_samples, samples_digest
from validators import latency as latency_check
from validators.parity import Tolerance, compare, uninformative_outputs

_REPORTED_PACKAGES = ("ondevice", "numpy", "torch", "tensorflow", "keras", "onnx", "onnxruntime", "openvino",
                      "onnx2tf", "tf2onnx", "litert-torch", "ai-edge-litert", "tflite-runtime")


def default_threads() -> int:
    """The same thread count for every runtime: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def installed_versions() -> dict:
    found = {}
    for name in _REPORTED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _samples(source, samples: int, seed: int, inputs_file):
    if inputs_file:
        data = load_samples(str(inputs_file), source.inputs)
        return data, {"kind": "file", "path": str(inputs_file), "seed": None, "samples": len(data)}
    if samples < 1:
        raise BadInputError("--samples must be at least 1")
    data = make_samples(source.inputs, samples, seed, source.example)
    return data, {"kind": "random", "seed": seed, "samples": len(data)}


def _reference(source, samples, threads):
    if not source.outputs:
        fill_source_outputs(source, threads)
    runner = reference_runner(source, threads)
    try:
        with quiet():
            return runner, [runner.run(s) for s in samples]
    except Exception as exc:
        raise BadInputError(f"the source model failed on the samples: {type(exc).__name__}: {exc}") from None


def validate_artifacts(source, artifacts: Artifacts, samples: int = 8, seed: int = 0, inputs_file=None,
                       tolerance: Tolerance | None = None, threads: int | None = None, runs: int = 50,
                       warmup: int = 5, allow_inconclusive: bool = False) -> Report:
    """Judge every artifact against the source on the same seeded samples."""
    threads = threads or default_threads()
    data, inputs_info = _samples(source, samples, seed, inputs_file)
    inputs_info["sha256"] = samples_digest(data)
    ref_runner, reference = _reference(source, data, threads)
    dead = uninformative_outputs(reference)
    with quiet():
        source_latency = latency_check.measure(lambda: ref_runner.run(data[0]), threads, runs, warmup).to_json()
    results = []
    for artifact in artifacts:
        tol = tolerance or Tolerance.default(artifact.quantize)
        results.append(_judge(artifact, data, reference, dead, tol, threads, runs, warmup))
        results[-1].source_latency = source_latency
    for failure in artifacts.failures:
        results.append(TargetResult(failure["target"], "conversion_error", error=failure["error"]))
    versions = {**installed_versions(), **ref_runner.versions()}
    return Report(source.to_json(), environment(threads, versions), inputs_info, results, allow_inconclusive)


def _judge(artifact, data, reference, dead, tol, threads, runs, warmup) -> TargetResult:
    result = TargetResult(artifact.target, "error", artifact.quantize, artifact=str(artifact.path.resolve()),
                          strategy=artifact.strategy, size_bytes=artifact.size_bytes)
    try:
        with quiet():
            runner = ArtifactRunner(artifact, threads)
            actual = [runner.run(s) for s in data]
    except OndeviceError as exc:
        result.error = str(exc)
        return result
    except Exception as exc:
        result.error = f"runtime failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        return result
    result.runtime = runner.runtime
    parity = compare(reference, actual, tol)
    result.parity = parity.to_json()
    if not parity.passed:
        result.status, result.error = "failed", "parity: " + "; ".join(parity.problems())
    elif dead:
        result.status, result.inconclusive = "inconclusive", sorted(dead)
        result.error = "parity inconclusive: " + "; ".join(dead.values())
    else:
        result.status = "passed"
    feeds = runner.feeds(data[0])
    with quiet():
        result.latency = latency_check.measure(lambda: runner.runner.run(feeds), threads, runs, warmup).to_json()
    return result


def check_source(source, targets, out_dir, samples: int = 8, seed: int = 0, inputs_file=None,
                 tolerance=None, threads=None, runs: int = 50, warmup: int = 5, allow_inconclusive=False,
                 quantize=None, strategy=None, dynamic=None) -> Report:
    """Export then validate; writes OUT/report.json and OUT/report.md."""
    threads = threads or default_threads()
    artifacts = export_source(source, targets, out_dir, quantize=quantize, strategy=strategy,
                              dynamic=dynamic, threads=threads)
    report = validate_artifacts(source, artifacts, samples, seed, inputs_file, tolerance, threads, runs,
                                warmup, allow_inconclusive)
    write_reports(report, Path(out_dir) / "report.json")
    return report


def write_reports(report: Report, json_path: Path) -> Path:
    """report.json plus its Markdown summary beside it."""
    json_path = Path(json_path)
    report.write(json_path)
    report.write(json_path.with_suffix(".md"))
    return json_path
