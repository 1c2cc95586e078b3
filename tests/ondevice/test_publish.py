"""Publishing: every report file is written once, after the gate, and shows the gate when one ran.

Writes are counted with a Python audit hook (``sys.addaudithook``): it sees every ``os.replace``
(the atomic rename that installs a file) and every ``open`` of the real process, so a second,
pre-gate rendering would be counted, not assumed away.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from ondevice._paths import REPORT_FILES
from ondevice.artifacts import Artifacts, ExportFailure
from ondevice.cli import main
from ondevice.core.errors import BadInputError
from ondevice.gate import Verdict, policy_from_dict, run_gate
from ondevice.publish import publish, published_names
from ondevice.report import load_report
from tests.conftest import FACTORY_FILE

READABLE = ("report.md", "report.html", "junit.xml")
_watched: list[Counter] = []  # the hook counts into the innermost; audit hooks cannot be removed


def _audit(event: str, args: tuple) -> None:
    if not _watched:
        return
    if event == "os.rename":  # os.replace raises this one: a file installed under its final name
        _watched[-1][Path(str(args[1])).name] += 1
    elif event == "open" and isinstance(args[0], (str, Path)):
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & 0o3)
        if writing and Path(str(args[0])).name in REPORT_FILES:  # written in place, not through a rename
            _watched[-1][Path(str(args[0])).name] += 1


sys.addaudithook(_audit)


def _counting(argv: list[str]) -> tuple[int, Counter]:
    """Run the CLI in this process; (exit code, writes per file name)."""
    _watched.append(Counter())
    try:
        code = main(argv)
    finally:
        writes = _watched.pop()
    return code, writes


def _policy(tmp_path: Path) -> Path:
    policy = tmp_path / "gate.toml"
    policy.write_text('[[size]]\ntarget = "onnx"\nmax_bytes = 1000\n')  # the CNN is larger: the gate fails
    return policy


def _gate_sections(folder: Path, stem: str = "report") -> dict[str, int]:
    """How many times each readable file shows the gate's verdict."""
    md = (folder / f"{stem}.md").read_text()
    html = (folder / f"{stem}.html").read_text()
    suite = ET.parse(folder / "junit.xml").getroot()
    junit = [f for f in suite.iter("failure") if (f.get("message") or "").startswith("size.max_bytes onnx[fp32]")]
    return {"md": md.count("### Gate: FAILED (exit 1)"), "html": html.count('<section id="gate">'), "junit": len(junit)}


@pytest.fixture(scope="module")
def gated_check(tmp_path_factory):
    """`check --policy` with a failing size rule: (exit code, writes, out folder, stdout lines)."""
    tmp = tmp_path_factory.mktemp("publish")
    out = tmp / "out"
    argv = ["check", f"{FACTORY_FILE}:cnn", "--to", "onnx", "-o", str(out), "--runs", "3", "--samples", "2"]
    code, writes = _counting([*argv, "--policy", str(_policy(tmp)), "--no-explain"])
    return code, writes, out


def test_check_with_a_failing_gate_writes_each_file_once_with_the_gate(gated_check):
    code, writes, out = gated_check
    assert code == 1
    assert {name: writes[name] for name in REPORT_FILES} == dict.fromkeys(REPORT_FILES, 1)
    assert _gate_sections(out) == {"md": 1, "html": 1, "junit": 1}
    assert json.loads((out / "report.json").read_text())["passed"] is True  # the policy failed, not the report
    assert json.loads((out / "gate.json").read_text())["failed"][0]["rule"] == "size.max_bytes"


def test_validate_with_and_without_policy_publishes_once(gated_check, tmp_path, capsys):
    _, _, out = gated_check
    gated = tmp_path / "gated" / "run.json"
    gated.parent.mkdir()
    argv = ["validate", f"{FACTORY_FILE}:cnn", str(out), "--runs", "3", "--samples", "2", "--no-explain"]
    code, writes = _counting([*argv, "--report", str(gated), "--policy", str(_policy(tmp_path))])
    assert code == 1 and capsys.readouterr().out.strip().splitlines()[-1].startswith("FAILED (gate: 1 of ")
    names = ("run.json", "run.md", "run.html", "junit.xml", "gate.json")
    assert names == published_names("run.json")
    assert {name: writes[name] for name in names} == dict.fromkeys(names, 1)
    assert _gate_sections(gated.parent, "run") == {"md": 1, "html": 1, "junit": 1}
    plain = tmp_path / "plain" / "report.json"
    plain.parent.mkdir()
    (plain.parent / "gate.json").write_text("{}")  # a previous gated run's verdict must not survive
    code, writes = _counting([*argv, "--report", str(plain)])
    assert code == 0
    assert {name: writes[name] for name in REPORT_FILES} == {
        **dict.fromkeys((*READABLE, "report.json"), 1),
        "gate.json": 0,
    }
    assert not (plain.parent / "gate.json").exists()
    assert "Gate" not in (plain.parent / "report.md").read_text()


def test_publish_and_the_typed_results_round_trip(gated_check, tmp_path):
    _, _, out = gated_check
    report = load_report(out / "report.json")
    verdict = run_gate(report, policy_from_dict({"size": {"target": "onnx", "max_bytes": 1000}}), None, "r.json")
    assert not verdict and verdict.exit_code == 1 and len(verdict.failures) == 1
    assert Verdict.from_json(json.loads(json.dumps(verdict.to_json()))) == verdict
    path = publish(report, tmp_path / "again", verdict)
    assert path == tmp_path / "again" / "report.json" and sorted(p.name for p in path.parent.iterdir()) == sorted(
        REPORT_FILES
    )
    assert json.loads((path.parent / "gate.json").read_text()) == verdict.to_json()
    assert published_names() == REPORT_FILES
    with pytest.raises(BadInputError, match=r"Report\.write writes JSON"):
        report.write(tmp_path / "report.md")


def test_export_failures_keep_the_manifest_form(tmp_path):
    float_fail = ExportFailure("tflite", "no strategy produced tflite: x: boom", attempts=({"strategy": "x"},))
    crashed = ExportFailure("tflite", "int8 quantization crashed", "int8", "error", (), "SIGSEGV")
    assert float_fail.to_json() == {"target": "tflite", "error": float_fail.error, "attempts": [{"strategy": "x"}]}
    assert list(crashed.to_json()) == ["target", "quantize", "status", "error", "attempts", "signal"]
    Artifacts(tmp_path, failures=[float_fail, crashed]).write_manifest()
    loaded = Artifacts.load(tmp_path)
    assert loaded.failures == [float_fail, crashed] and loaded.failures[1].status == "error"
