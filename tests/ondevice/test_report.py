"""report.json follows the schema in docs/report-schema.md and round-trips."""

from __future__ import annotations

import json

import pytest

from ondevice import load_report

TARGET_KEYS = {
    "target",
    "quantize",
    "status",
    "error",
    "artifact",
    "strategy",
    "size_bytes",
    "parity",
    "latency",
    "source_latency",
}
OUTPUT_KEYS = {"name", "max_abs_err", "mean_abs_err", "max_rel_err", "cosine", "snr_db", "atol", "rtol", "passed"}
LATENCY_KEYS = {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "runs", "warmup", "threads"}


def test_report_json_schema(torch_cnn_check):
    _, out = torch_cnn_check
    data = json.loads((out / "report.json").read_text())
    assert data["schema_version"] == 1 and data["passed"] is True and data["exit_code"] == 0
    assert set(data["source"]) >= {"spec", "framework", "inputs", "outputs"}
    assert data["source"]["framework"] == "torch"
    assert data["source"]["inputs"] == [{"name": "input", "shape": [1, 3, 64, 64], "dtype": "float32"}]
    assert set(data["environment"]) >= {"python", "platform", "threads", "packages"}
    assert "torch" in data["environment"]["packages"] and "onnxruntime" in data["environment"]["packages"]
    assert data["inputs"]["kind"] == "random" and data["inputs"]["seed"] == 0 and data["inputs"]["samples"] == 8
    assert len(data["inputs"]["sha256"]) == 64
    for target in data["targets"]:
        assert set(target) >= TARGET_KEYS
        assert (out / target["artifact"]).exists(), "artifact path is relative to report.json's folder"
        assert set(target["parity"]) == {"passed", "samples", "outputs"}
        for output in target["parity"]["outputs"]:
            assert set(output) >= OUTPUT_KEYS
        assert set(target["latency"]) >= LATENCY_KEYS
        assert set(target["source_latency"]) >= LATENCY_KEYS
        assert target["latency"]["threads"] == data["environment"]["threads"]


def test_report_round_trips_and_markdown(torch_cnn_check, tmp_path):
    _report, out = torch_cnn_check
    loaded = load_report(out / "report.json")
    assert bool(loaded) and loaded.exit_code == 0
    assert [t.status for t in loaded.targets] == ["passed"] * 3
    md = (out / "report.md").read_text()
    assert "| onnx | passed |" in md and "| tflite | passed |" in md and "| openvino | passed |" in md


def test_same_seed_same_inputs(torch_cnn_check, tmp_path):
    import ondevice
    from tests.models import cnn

    report, out = torch_cnn_check
    again = ondevice.validate(*cnn()[:1], out, samples=8, seed=0, example_inputs=cnn()[1], runs=3)
    assert again.inputs["sha256"] == report.inputs["sha256"]
    other = ondevice.validate(cnn()[0], out, samples=8, seed=1, example_inputs=cnn()[1], runs=3)
    assert other.inputs["sha256"] != report.inputs["sha256"]


def test_stage_timings_and_run_facts(torch_cnn_check):
    """Where the time went: per-target stages that add up, and the run's wall time and peak memory."""
    _report, out = torch_cnn_check
    data = json.loads((out / "report.json").read_text())
    run = data["run"]
    assert 0 < run["validate_s"] < run["wall_s"] and run["peak_rss_mb"] > 100
    for t in data["targets"]:
        timings = t["timings"]
        tried = {k: v for k, v in timings.items() if k.startswith("strategy:")}
        assert tried == {f"strategy:{t['strategy']}": pytest.approx(timings["export"], abs=2e-3)}
        assert timings["export"] > 0.05
        # The worker's own stages fit inside the worker's wall time (process start and imports are the rest).
        assert 0 < timings["load"] + timings["parity_run"] + timings["latency"] < timings["worker"]
        assert timings["export"] + timings["worker"] < run["wall_s"]
        assert timings["worker"] < run["validate_s"]
    markdown = (out / "report.md").read_text()
    assert "Where the time went (run " in markdown and f"{data['targets'][0]['strategy']} " in markdown
