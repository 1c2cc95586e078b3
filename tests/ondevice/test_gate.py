"""The release gate: policy validation, rules on a real report, and regressions against a baseline.

Every report here is the real report of the session's CNN check, or a copy of it with one thing
changed the way a later release could change it (slower, bigger, a target failing).
"""

from __future__ import annotations

import copy
import json

import pytest

from ondevice.cli import main
from ondevice.gate import load_policy, policy_from_dict, run_gate
from ondevice.report import load_report


def last_line(text):
    return text.strip().splitlines()[-1]


@pytest.fixture
def real(torch_cnn_check):
    """(path of the real report.json, its parsed JSON)."""
    _, out = torch_cnn_check
    return out / "report.json", json.loads((out / "report.json").read_text())


def derive(data, path, change):
    """Write a copy of report JSON ``data`` to ``path`` after ``change(copy)``."""
    data = copy.deepcopy(data)
    change(data)
    path.write_text(json.dumps(data))
    return path


def scale_latency(factor, targets=None):
    """Every timing of the chosen targets multiplied by ``factor``: the whole distribution moved."""

    def change(data):
        for t in data["targets"]:
            if targets is None or t["target"] in targets:
                lat = t["latency"]
                for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms"):
                    lat[key] *= factor
                lat["p50_ci95_ms"] = [v * factor for v in lat["p50_ci95_ms"]]

    return change


def gate_cli(capsys, *args):
    code = main(["gate", *map(str, args)])
    return code, capsys.readouterr().out


def write_policy(tmp_path, text):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


def detectable(lat):
    """Whether tripling this run's p50 moves each median outside the other run's 95% CI."""
    lo, hi = lat["p50_ci95_ms"]
    return 3 * lat["p50_ms"] > hi and lat["p50_ms"] < 3 * lo


def test_real_report_passes_default_gate_against_itself(real, capsys, tmp_path):
    path, _ = real
    code, out = gate_cli(capsys, path, "--baseline", path, "--json", tmp_path / "gate.json")
    assert code == 0, out
    assert last_line(out).startswith("PASSED (gate: ") and f"report: {path}" in last_line(out)
    result = json.loads((tmp_path / "gate.json").read_text())
    assert result["passed"] is True and result["failed"] == [] and result["checks"] >= 12


def test_tripled_p50_fails_and_names_the_rule(real, capsys, tmp_path):
    path, data = real
    slower = derive(data, tmp_path / "slower.json", scale_latency(3.0))
    code, out = gate_cli(capsys, slower, "--baseline", path, "--json", tmp_path / "gate.json")
    expected = {t["target"] for t in data["targets"] if detectable(t["latency"])}
    assert expected, f"every CI in the fixture is wider than 3x; the machine was too noisy: {data['targets']}"
    assert code == 1, out
    assert last_line(out).startswith("FAILED (gate: ") and "regression.latency_p50" in last_line(out)
    failed = json.loads((tmp_path / "gate.json").read_text())["failed"]
    named = {f["target"] for f in failed if f["rule"] == "regression.latency_p50"}
    assert named == expected
    for f in failed:
        base = next(t for t in data["targets"] if t["target"] == f["target"])["latency"]["p50_ms"]
        assert f["baseline"] == pytest.approx(base) and f["actual"] == pytest.approx(3 * base)
        assert f["limit"] == pytest.approx(1.1 * base)


def test_p50_two_percent_slower_within_noise_passes(real, capsys, tmp_path):
    path, data = real
    slower = derive(data, tmp_path / "slower.json", scale_latency(1.02))
    code, out = gate_cli(capsys, slower, "--baseline", path)
    assert code == 0, out
    assert last_line(out).startswith("PASSED")


def test_baseline_from_another_cpu_class_is_noted(real, capsys, tmp_path):
    """A report proved on an AVX2 box against one from an AVX-512/VNNI box: said, not failed."""
    path, data = real
    assert data["environment"]["cpu"]["isa_class"] and data["environment"]["cpu"]["cores"] >= 1

    def on_avx2(d):
        d["environment"]["cpu"] = {**d["environment"]["cpu"], "isa_class": "avx2-test", "isa": ["avx2", "fma"]}

    other = derive(data, tmp_path / "other_cpu.json", on_avx2)
    code, out = gate_cli(capsys, other, "--baseline", path)
    assert code == 0, out
    note = next(line for line in out.splitlines() if "different CPU classes" in line)
    assert note.startswith("gate: note:") and "now avx2-test" in note
    code, out = gate_cli(capsys, path, "--baseline", path)
    assert code == 0 and "different CPU classes" not in out


def test_slower_beyond_percentage_but_inside_the_intervals_is_noise(real):
    """+50% p50 fails only when each median lies outside the other run's CI, never on percentage alone."""
    path, _ = real
    baseline = load_report(path)

    def gate_with(new_ci, base_ci):
        """p50 +50%; both runs' CIs set as multiples of the baseline p50."""
        base, now = copy.deepcopy(baseline), copy.deepcopy(baseline)
        for old, new in zip(base.targets, now.targets, strict=True):
            p50 = old.latency["p50_ms"]
            old.latency["p50_ci95_ms"] = [base_ci[0] * p50, base_ci[1] * p50]
            new.latency["p50_ms"] = 1.5 * p50
            new.latency["p50_ci95_ms"] = [new_ci[0] * p50, new_ci[1] * p50]
        return run_gate(now, None, base)

    noisy = gate_with((0.8, 2.5), (0.5, 1.6))  # each median inside the other's interval
    assert noisy.passed and len(noisy.notes) == 3 and "within the runs' noise" in noisy.notes[0]
    half = gate_with((0.8, 2.5), (0.95, 1.05))  # new median outside the old CI, old median inside the new CI
    assert half.passed
    tight = gate_with((1.45, 1.55), (0.95, 1.05))
    assert [f.rule for f in tight.failures] == ["regression.latency_p50"] * 3


def test_missing_ci_counts_as_a_point(real):
    """A report without p50_ci95_ms (an older run) is compared on p50 and the percentage alone."""
    path, _ = real
    baseline = load_report(path)
    for t in baseline.targets:
        del t.latency["p50_ci95_ms"]

    def slower(factor):
        report = copy.deepcopy(baseline)
        for t in report.targets:
            t.latency["p50_ms"] *= factor
        return run_gate(report, None, baseline)

    assert [f.rule for f in slower(1.2).failures] == ["regression.latency_p50"] * 3
    assert slower(1.05).passed


def test_newly_failing_target_exits_1(real, capsys, tmp_path):
    path, data = real

    def tflite_fails(d):
        t = next(t for t in d["targets"] if t["target"] == "tflite")
        out = t["parity"]["outputs"][0]
        out.update(max_abs_err=0.05, passed=False, problem="max abs error 0.05 exceeds atol 0.0001")
        t["parity"]["passed"] = False
        t["status"], t["error"] = "failed", "parity: output: max abs error 0.05 exceeds atol 0.0001"
        d["passed"], d["exit_code"] = False, 1

    failing = derive(data, tmp_path / "failing.json", tflite_fails)
    code, out = gate_cli(capsys, failing, "--baseline", path, "--json", tmp_path / "gate.json")
    assert code == 1, out
    failed = json.loads((tmp_path / "gate.json").read_text())["failed"]
    rules = {(f["rule"], f["target"]) for f in failed}
    assert ("regression.newly_failing", "tflite") in rules and ("status", "tflite") in rules
    assert ("regression.parity_max_abs_err", "tflite") in rules
    assert all(f["target"] == "tflite" for f in failed)
    assert "regression.newly_failing tflite[fp32]" in last_line(out)


def test_missing_and_unconvertible_targets(real, tmp_path):
    path, data = real
    baseline = load_report(path)
    dropped = load_report(
        derive(data, tmp_path / "dropped.json", lambda d: d["targets"].pop())
    )  # openvino no longer exported
    result = run_gate(dropped, load_policy(write_policy(tmp_path, '[require]\ntargets = ["openvino"]\n')), baseline)
    assert {(f.rule, f.target) for f in result.failures} == {
        ("require.target", "openvino"),
        ("regression.missing_target", "openvino"),
    }
    assert result.exit_code == 1

    def unconvertible(d):
        t = d["targets"][2]
        d["targets"][2] = {"target": t["target"], "status": "conversion_error", "error": "no strategy worked"}

    broken = load_report(derive(data, tmp_path / "broken.json", unconvertible))
    result = run_gate(broken, policy_from_dict({"latency": {"max_p90_ms": 1e6}}))
    # The status rule says it once, with the report's exit code 3; no "not measured" noise follows.
    assert [(f.rule, f.target, f.exit_code) for f in result.failures] == [("status", "openvino", 3)]


def test_policy_rules_on_real_numbers(real, tmp_path):
    path, data = real
    report = load_report(path)
    worst_err = max(o["max_abs_err"] for t in data["targets"] for o in t["parity"]["outputs"])
    lenient = write_policy(
        tmp_path,
        f"""
[require]
targets = ["onnx", "tflite", "openvino"]
precisions = ["fp32"]
[[parity]]
atol = {worst_err * 2}
min_cosine = 0.9999
min_snr_db = 60
[[latency]]
max_p90_ms = 1e6
[[size]]
max_bytes = 10_000_000
""",
    )
    result = run_gate(report, load_policy(lenient))
    assert result.passed, [f.line() for f in result.failures]
    assert result.checks == 3 + 3 + 3 * 3 + 3 + 3  # required, status, parity x3, latency, size

    strict = policy_from_dict(
        {
            "parity": [{"atol": worst_err / 10}, {"target": "onnx", "min_snr_db": 500.0}],
            "latency": [{"target": "tflite", "max_p90_ms": 1e-6}],
            "size": [{"precision": "fp32", "max_bytes": 1000}],
        }
    )
    failed = {(f.rule, f.target) for f in run_gate(report, strict).failures}
    assert ("parity.min_snr_db", "onnx") in failed and ("latency.max_p90_ms", "tflite") in failed
    assert {("size.max_bytes", t) for t in ("onnx", "tflite", "openvino")} <= failed
    worst = next(
        t["target"] for t in data["targets"] if any(o["max_abs_err"] == worst_err for o in t["parity"]["outputs"])
    )
    assert ("parity.tolerance", worst) in failed
    assert ("latency.max_p90_ms", "onnx") not in failed  # the latency rule names tflite only


def test_specific_rules_override_general_ones():
    policy = policy_from_dict(
        {
            "parity": [
                {"target": "tflite", "precision": "fp16", "output": "logits", "atol": 3.0},
                {"atol": 1.0, "min_cosine": 0.99},
                {"target": "tflite", "atol": 2.0},
            ]
        }
    )
    assert policy.thresholds("parity", "tflite", "fp16", "logits") == {"atol": 3.0, "min_cosine": 0.99}
    assert policy.thresholds("parity", "tflite", "fp32", "logits") == {"atol": 2.0, "min_cosine": 0.99}
    assert policy.thresholds("parity", "onnx", "fp32", "logits") == {"atol": 1.0, "min_cosine": 0.99}


def test_agreement_rules_and_rules_the_report_cannot_prove(real, tmp_path):
    """Top-k agreement is judged where measured; where the report lacks it the rule fails closed."""
    _path, data = real

    def agreement(top1, topk):
        def change(d):
            for t in d["targets"]:
                for out in t["parity"]["outputs"]:
                    out.pop("top1_agreement", None), out.pop("topk_agreement", None)
                    if topk is not None:  # what a quantized classifier that lost some rankings reports
                        out.update(top1_agreement=top1, topk_agreement=topk)

        return change

    policy = policy_from_dict(
        {"parity": [{"min_topk_agreement": 0.9, "min_top1_agreement": 0.5}, {"output": "logits", "min_cosine": 0.9}]}
    )
    lost = run_gate(load_report(derive(data, tmp_path / "lost.json", agreement(0.75, 0.8))), policy)
    rules = [(f.rule, f.output) for f in lost.failures]
    assert rules.count(("parity.min_topk_agreement", "output")) == 3 and rules.count(("parity.output", "logits")) == 3
    assert not any(r == "parity.min_top1_agreement" for r, _ in rules)
    unmeasured = run_gate(load_report(derive(data, tmp_path / "none.json", agreement(None, None))), policy)
    messages = [f.message for f in unmeasured.failures if f.rule.startswith("parity.min_")]
    assert len(messages) == 6 and all(m.startswith("not measured") for m in messages)


@pytest.mark.parametrize(
    "text, named",
    [
        ("[parity]\nmax_cos = 0.9\n", "'max_cos'"),
        ("[require]\ntarget = ['onnx']\n", "'target'"),
        ("[gates]\n", "'gates'"),
        ("[[latency]]\ntarget = 'tflite'\nmax_p95_ms = 3\n", "'max_p95_ms'"),
        ("[regression]\nlatency_percent = 5\n", "'latency_percent'"),
    ],
)
def test_unknown_policy_key_exits_2(real, capsys, tmp_path, text, named):
    path, _ = real
    code, out = gate_cli(capsys, path, "--policy", write_policy(tmp_path, text))
    assert code == 2, out
    line = last_line(out)
    assert line.startswith("FAILED (") and "unknown key" in line and named in line and "gate.toml" in line


@pytest.mark.parametrize(
    "text, words",
    [
        ("[require]\ntargets = ['coreml']\n", "unknown value 'coreml'"),
        ("[[parity]]\nmin_cosine = 2\n", "outside"),
        ("[[size]]\nmax_bytes = 'big'\n", "must be a finite number"),
        ("[[latency]]\ntarget = 'onnx'\n", "sets no limit"),
        ("[require\n", "not valid TOML"),
        ("[require]\nprecisions = ['fp16']\n", "needs require.targets"),
    ],
)
def test_bad_policy_values_exit_2(real, capsys, tmp_path, text, words):
    path, _ = real
    code, out = gate_cli(capsys, path, "--policy", write_policy(tmp_path, text))
    assert code == 2 and words in last_line(out), out


def test_validate_checks_the_policy_before_any_work(capsys, tmp_path):
    """A typo in gate.toml is reported before the source is even loaded."""
    policy = write_policy(tmp_path, "[parity]\nmin_cosin = 0.9\n")
    code = main(["validate", str(tmp_path / "missing.onnx"), str(tmp_path), "--policy", str(policy)])
    line = last_line(capsys.readouterr().out)
    assert code == 2 and "'min_cosin'" in line and "missing.onnx" not in line


def test_gate_bad_report_or_baseline_exits_2(real, capsys, tmp_path):
    path, _ = real
    code, out = gate_cli(capsys, tmp_path / "nope.json")
    assert code == 2 and "report not found" in last_line(out)
    code, out = gate_cli(capsys, path, "--baseline", tmp_path / "nope.json")
    assert code == 2 and last_line(out).startswith("FAILED (baseline: report not found")


def test_regression_thresholds_are_configurable(real, tmp_path):
    path, data = real
    baseline = load_report(path)
    bigger = load_report(
        derive(
            data,
            tmp_path / "bigger.json",
            lambda d: [t.update(size_bytes=int(t["size_bytes"] * 1.08)) for t in d["targets"]],
        )
    )
    assert {f.rule for f in run_gate(bigger, None, baseline).failures} == {"regression.size"}
    assert run_gate(bigger, policy_from_dict({"regression": {"size_growth_pct": 10}}), baseline).passed


def test_the_documented_policy_is_valid(real):
    """docs/gating.md's gate.toml loads and judges a real report (only its latency budgets can fail)."""
    import re
    import tomllib
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "gating.md").read_text()
    policy = policy_from_dict(tomllib.loads(re.search(r"```toml\n(.*?)```", doc, re.S).group(1)), "docs")
    assert policy.targets == ("onnx", "tflite", "openvino") and policy.regression["latency_pct"] == 10.0
    assert policy.thresholds("parity", "tflite", "int8", "logits")["min_topk_agreement"] == 0.99
    result = run_gate(load_report(real[0]), policy, load_report(real[0]))
    assert result.checks > 20 and all(f.rule.startswith("latency.") for f in result.failures)


def test_gate_command_imports_no_framework(real):
    import subprocess
    import sys

    code = (
        "import sys\nfrom ondevice.cli import main\n"
        f"main(['gate', {str(real[0])!r}, '--baseline', {str(real[0])!r}])\n"
        "print('HEAVY', [m for m in ('torch', 'tensorflow', 'openvino', 'onnxruntime', 'numpy') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
