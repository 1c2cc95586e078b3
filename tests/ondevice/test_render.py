"""Markdown, HTML and JUnit renderings of a real report; the HTML page is opened in headless Chromium."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ondevice.cli import main
from ondevice.gate import policy_from_dict, run_gate
from ondevice.render import to_html, to_junit, to_markdown
from ondevice.report import load_report
from tests.conftest import FACTORY_FILE

CHROMIUM = "/usr/bin/chromium"
# Everything that could reach the network or touch a profile is off: the page must render offline.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
)


def last_line(text):
    return text.strip().splitlines()[-1]


@pytest.fixture
def failing_gate(torch_cnn_check):
    """The real report with its tflite latency tripled, judged against the real report: (report, gate)."""
    _, out = torch_cnn_check
    baseline = load_report(out / "report.json")
    report = copy.deepcopy(baseline)
    old, new = baseline.targets[1].latency, report.targets[1].latency
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms"):
        new[key] = 3 * old[key]
    # Tight intervals make the regression certain: this fixture is about rendering, not about noise.
    old["p50_ci95_ms"] = [0.99 * old["p50_ms"], 1.01 * old["p50_ms"]]
    new["p50_ci95_ms"] = [0.99 * new["p50_ms"], 1.01 * new["p50_ms"]]
    policy = policy_from_dict({"size": {"target": "openvino", "max_bytes": 1000}})
    return report, run_gate(report, policy, baseline, "report.json", "previous.json")


def test_markdown_for_a_pull_request(torch_cnn_check, failing_gate):
    report, gate = failing_gate
    md = to_markdown(report, gate)
    assert md.startswith("## ondevice: FAILED (exit 1)")  # the report passed; its gate did not
    for target in ("onnx", "tflite", "openvino"):
        assert f"| {target} | passed | fp32 |" in md
    assert "### Gate: FAILED (exit 1)" in md
    rows = [line for line in md.splitlines() if line.startswith(("| regression.", "| size."))]
    assert [r.split(" | ")[0] for r in rows] == ["| size.max_bytes", "| regression.latency_p50"]
    assert "<details><summary>Errors per output</summary>" in md
    _, out = torch_cnn_check
    assert (out / "report.md").read_text() == to_markdown(load_report(out / "report.json"))


def _junit_counts(text):
    suite = ET.fromstring(text)
    cases = suite.findall("testcase")
    by_outcome = {kind: sum(1 for c in cases if c.find(kind) is not None) for kind in ("failure", "error", "skipped")}
    return suite, cases, by_outcome


def test_junit_one_case_per_target_and_check(torch_cnn_check, failing_gate):
    report, gate = failing_gate
    suite, cases, outcome = _junit_counts(to_junit(load_report(torch_cnn_check[1] / "report.json")))
    assert int(suite.get("tests")) == len(cases) == 12
    assert outcome == {"failure": 0, "error": 0, "skipped": 0} and suite.get("failures") == "0"
    assert {(c.get("classname"), c.get("name")) for c in cases} == {
        (f"ondevice.{t}.fp32", check)
        for t in ("onnx", "tflite", "openvino")
        for check in ("export", "parity", "latency", "size")
    }

    suite, cases, outcome = _junit_counts(to_junit(report, gate))
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert failed == {("ondevice.tflite.fp32", "latency"), ("ondevice.openvino.fp32", "size")}
    assert suite.get("failures") == "2" and int(suite.get("tests")) == 12
    case = next(c for c in cases if c.get("classname") == "ondevice.tflite.fp32" and c.get("name") == "latency")
    assert "regression.latency_p50" in case.find("failure").get("message")


def test_junit_marks_errors_and_missing_targets(torch_cnn_check):
    report = load_report(torch_cnn_check[1] / "report.json")
    report.targets[0].status, report.targets[0].error = "error", "runtime failed: segfault (signal 11)"
    report.targets[1].status, report.targets[1].parity, report.targets[1].latency = "conversion_error", None, None
    gate = run_gate(report, policy_from_dict({"require": {"targets": ["onnx"], "precisions": ["fp16"]}}))
    suite, cases, outcome = _junit_counts(to_junit(report, gate))
    assert int(suite.get("tests")) == len(cases) == 16  # 3 targets + the required onnx fp16, 4 checks each
    assert outcome["error"] == 1 and suite.get("errors") == "1"
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert ("ondevice.tflite.fp32", "export") in failed and ("ondevice.onnx.fp16", "export") in failed


def _chromium(*args, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium package")
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )


def _pixels_near(image, rgb, tolerance=12):
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return int(np.sum(np.all(np.abs(pixels - np.array(rgb)) <= tolerance, axis=-1)))


def test_html_renders_in_headless_chromium(failing_gate, tmp_path):
    report, gate = failing_gate
    page = tmp_path / "report.html"
    page.write_text(to_html(report, gate))
    text = page.read_text()
    # Self-contained: nothing to fetch (the only URL is the SVG namespace, which is never loaded).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text) and "<script" not in text
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) == {"http://www.w3.org/2000/svg"}

    dom = _chromium("--dump-dom", page.as_uri(), tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    summary = re.search(r'<table class="summary">.*?</table>', html, re.S).group(0)
    assert summary.count("<tr>") == 1 + 3 and all(f"<td>{t}</td>" in summary for t in ("onnx", "tflite", "openvino"))
    assert html.count('<table class="outputs">') == 3 and html.count('<table class="gate">') == 1
    assert html.count('<svg class="plot"') == 1 and html.count('<svg class="plot hist"') == 3
    assert html.count("<rect") > 10 and "regression.latency_p50" in html

    shot = tmp_path / "report.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri(), tmp_path=tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot)
    assert image.size == (1280, 2400)
    # The plots were painted, not just parsed: count pixels of the colours only the SVGs use.
    assert _pixels_near(image, (138, 180, 248)) > 200, "latency p50-p90 bars (#8ab4f8) not painted"
    assert _pixels_near(image, (83, 159, 105)) > 2000, "error histogram bars (#1a7f37 at 75%) not painted"
    assert _pixels_near(image, (26, 127, 55), 4) > 200, "status badges (#1a7f37) not painted"
    print(f"screenshot: {shot}")


def test_check_writes_every_report_and_gates(tmp_path, capsys):
    """`check --policy` writes report.json, .md, .html, junit.xml and gate.json; the gate sets the exit code."""
    policy = tmp_path / "gate.toml"
    policy.write_text('[require]\ntargets = ["onnx"]\n[[size]]\ntarget = "onnx"\nmax_bytes = 1000\n')
    out = tmp_path / "out"
    code = main(
        [
            "check",
            f"{FACTORY_FILE}:cnn",
            "--to",
            "onnx",
            "-o",
            str(out),
            "--runs",
            "5",
            "--samples",
            "2",
            "--policy",
            str(policy),
        ]
    )
    text = capsys.readouterr().out
    assert code == 1, text
    assert last_line(text).startswith("FAILED (gate: 1 of ") and "size.max_bytes onnx[fp32]" in last_line(text)
    assert "gate: FAIL size.max_bytes onnx[fp32]:" in text
    data = json.loads((out / "report.json").read_text())
    assert data["passed"] is True  # the report's own checks passed; the policy is what failed
    gate = json.loads((out / "gate.json").read_text())
    assert [f["rule"] for f in gate["failed"]] == ["size.max_bytes"] and gate["exit_code"] == 1
    assert gate["failed"][0]["actual"] == data["targets"][0]["size_bytes"]
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "1"
    html = (out / "report.html").read_text()
    assert "Release gate" in html and "size.max_bytes" in html
    assert "### Gate: FAILED (exit 1)" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "fmt, marker", [("md", "## ondevice: PASSED"), ("html", "<!DOCTYPE html>"), ("junit", '<testsuite name="ondevice"')]
)
def test_report_command_formats(torch_cnn_check, tmp_path, capsys, fmt, marker):
    _, out = torch_cnn_check
    target = tmp_path / f"out.{fmt}"
    code = main(
        ["report", str(out / "report.json"), "--format", fmt, "-o", str(target), "--baseline", str(out / "report.json")]
    )
    assert code == 0 and last_line(capsys.readouterr().out).startswith("PASSED")
    assert marker in target.read_text()
