"""ondevice zoo: a zoo of PyTorch and Keras models with a crash, a hang, a memory hog and a parity failure,
run locally (2 workers, cold cache), on a real local Ray instance (warm cache), and interrupted then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ondevice import timing
from ondevice.cli import _model_options, main
from ondevice.core.errors import BadInputError
from ondevice.zoo import cache
from ondevice.zoo.config import load_zoo
from ondevice.zoo.diff import bucket, compare

ROOT = Path(__file__).resolve().parents[2]
GOOD = ("cnn", "mlp", "keras_cnn", "keras_mlp")
EXPECTED = {
    "crash": "crashed",
    "cnn": "passed",
    "mlp": "passed",
    "noisy": "failed",
    "keras_mlp": "passed",
    "keras_cnn": "passed",
    "hog": "memory",
    "hang": "timeout",
}
HANG_TIMEOUT_S = 15
HOG_CAP_MB = 400
ZOO = f"""
[defaults]
to = ["onnx", "openvino"]
samples = 2
runs = 5
no_explain = true
no_emulate_cpu = true

[[model]]
source = "{ROOT}/tests/zoo_models.py:crash"

[[model]]
name = "cnn"
source = "{ROOT}/tests/models.py:cnn"

[[model]]
name = "mlp"
source = "{ROOT}/tests/zoo_models.py:torch_mlp"

[[model]]
source = "{ROOT}/tests/zoo_models.py:noisy"

[[model]]
source = "{ROOT}/tests/zoo_models.py:keras_mlp"

[[model]]
source = "{ROOT}/tests/models.py:keras_cnn"

[[model]]
source = "{ROOT}/tests/zoo_models.py:hog"
memory = {HOG_CAP_MB}

[[model]]
source = "{ROOT}/tests/zoo_models.py:hang"
timeout = {HANG_TIMEOUT_S}
"""


def zoo_command(*args, **popen):
    """``ondevice zoo ...`` as a user runs it (the supervised console entry)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from ondevice.cli import main; sys.exit(main())"
    return subprocess.Popen(
        [sys.executable, "-c", code, "zoo", *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    (folder / "zoo.toml").write_text(ZOO)
    return folder / "zoo.toml", folder / "cache"


@pytest.fixture(scope="module")
def local_run(zoo_file, tmp_path_factory):
    """Cold: every model converted, two at a time."""
    path, cache_dir = zoo_file
    out = tmp_path_factory.mktemp("local")
    started = time.monotonic()
    code, stdout, stderr = finish(zoo_command(path, "-o", out, "--workers", 2, "--cache", cache_dir))
    return code, stdout, stderr, out, time.monotonic() - started


@pytest.fixture(scope="module")
def ray_run(zoo_file, local_run, tmp_path_factory):
    """The same zoo as Ray tasks on a private local Ray instance; the cache is warm from the local run."""
    path, cache_dir = zoo_file
    out = tmp_path_factory.mktemp("ray")
    code, stdout, stderr = finish(
        zoo_command(
            path,
            "-o",
            out,
            "--workers",
            2,
            "--cache",
            cache_dir,
            "--executor",
            "ray",
            "--baseline",
            local_run[3] / "scorecard.json",
        )
    )
    return code, stdout, stderr, out


def card_of(out: Path) -> dict:
    return json.loads((out / "scorecard.json").read_text())


def states(card: dict) -> dict:
    return {m["name"]: m["state"] for m in card["models"]}


def test_local_run_survives_crash_hang_memory_and_parity(local_run):
    code, stdout, stderr, out, _ = local_run
    assert code == 4, stdout + stderr  # a crash is a fault: the highest exit code wins
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("FAILED (8 models: 1 crashed, 1 failed, 1 memory, 4 passed, 1 timeout; crash: crashed; ")
    assert last.endswith(f"scorecard: {out / 'scorecard.json'}"), last
    card = card_of(out)
    assert states(card) == EXPECTED
    by_name = {m["name"]: m for m in card["models"]}
    assert "SIGSEGV" in by_name["crash"]["verdict"]
    assert by_name["hang"]["exit_code"] == 4 and f"timed out after {HANG_TIMEOUT_S} s" in by_name["hang"]["verdict"]
    assert by_name["hog"]["peak_rss_mb"] > HOG_CAP_MB
    assert card["exit_code"] == 4 and card["passed"] is False
    assert card["counts"] == {"crashed": 1, "failed": 1, "passed": 4, "memory": 1, "timeout": 1}


def test_local_run_matrix_numbers(local_run):
    card = card_of(local_run[3])
    for model in card["models"]:
        if model["name"] in GOOD:
            assert [(t["target"], t["precision"], t["status"]) for t in model["targets"]] == [
                ("onnx", "fp32", "passed"),
                ("openvino", "fp32", "passed"),
            ]
            for t in model["targets"]:
                assert t["max_abs_err"] < 1e-4 and t["p50_ms"] > 0 and t["size_bytes"] > 0 and t["strategy"]
                assert t["p50_ci95_ms"][0] <= t["p50_ms"] <= t["p50_ci95_ms"][1]
                assert t["from_cache"] is False
            assert model["cache"]["hit"] is False and model["cache"]["stored"] is True
        elif model["name"] == "noisy":
            assert [t["status"] for t in model["targets"]] == ["failed", "failed"]
            assert min(t["max_abs_err"] for t in model["targets"]) > 0.01
        else:
            assert model["targets"] == [] and model["report"] is None


def test_local_run_files_status_and_progress(local_run):
    _, _, stderr, out, _ = local_run
    for name in (*GOOD, "noisy"):
        for file in ("report.json", "report.md", "report.html", "junit.xml", "manifest.json", "zoo.log"):
            assert (out / name / file).is_file(), (name, file)
    # Killed jobs cannot clean up after themselves; the run does. Its own scratch goes too.
    assert not any(out.rglob(".work")) and not (out / ".zoo").exists()
    status = json.loads((out / "zoo-status.json").read_text())
    assert {n: e["state"] for n, e in status["models"].items()} == EXPECTED
    assert all(len(e["digest"]) == 16 for e in status["models"].values())
    markdown, html = (out / "scorecard.md").read_text(), (out / "scorecard.html").read_text()
    assert "Latency policy: 2 models at a time" in markdown and "SIGSTOP" in markdown
    assert "<table" in html and "crashed" in html and "SIGSTOP" in html
    assert "hang: timeout in" in stderr and "8/8 done, 4 failed" in stderr


def test_ray_run_matches_local_and_reuses_cache(ray_run, local_run):
    code, stdout, stderr, out = ray_run
    assert code == 4, stdout + stderr
    card = card_of(out)
    assert card["executor"] == "ray" and states(card) == EXPECTED
    for model in card["models"]:
        if model["name"] in GOOD:
            assert model["cache"]["hit"] is True
            assert all(t["from_cache"] and t["status"] == "passed" for t in model["targets"])
            report = json.loads((out / model["name"] / "report.json").read_text())
            assert report["run"]["cache"]["hit"] is True
            assert all(any("conversion cache" in n for n in t["notes"]) for t in report["targets"])
    # Artifacts and reports came back to the driver's folder, and still match their manifest.
    from ondevice.artifacts import Artifacts

    assert len(Artifacts.load(out / "cnn")) == 2
    assert "SIGSEGV" in {m["name"]: m for m in card["models"]}["crash"]["verdict"]
    view = card["baseline"]
    assert view["started_failing"] == [] and view["missing_models"] == [] and view["new_models"] == []
    assert len(view["latency"]) == 2 * len(GOOD) + 2  # every target that has a p50 in both runs


def test_trust_cache_reuses_the_kept_report(zoo_file, local_run, ray_run, tmp_path):
    """--trust-cache: a hit with the same validation settings reuses the validated report, numbers and all."""
    cache_dir = zoo_file[1]
    head, _, _ = ZOO.partition("[[model]]")
    cnn = next(block for block in ZOO.split("[[model]]")[1:] if 'name = "cnn"' in block)
    (tmp_path / "zoo.toml").write_text(f"{head}[[model]]{cnn}")
    code, stdout, stderr = finish(
        zoo_command(tmp_path / "zoo.toml", "-o", tmp_path / "out", "--cache", cache_dir, "--trust-cache")
    )
    assert code == 0, stdout + stderr
    report = json.loads((tmp_path / "out" / "cnn" / "report.json").read_text())
    assert report["run"]["cache"]["hit"] is True and report["run"]["cache"]["revalidated"] is False
    assert all(any("not validated again (--trust-cache)" in n for n in t["notes"]) for t in report["targets"])
    earlier = [
        {t["target"]: t["p50_ms"] for t in m["targets"]}
        for out in (local_run[3], ray_run[3])
        for m in card_of(out)["models"]
        if m["name"] == "cnn"
    ]
    assert {t["target"]: t["latency"]["p50_ms"] for t in report["targets"]} in earlier
    from ondevice.artifacts import Artifacts

    assert len(Artifacts.load(tmp_path / "out" / "cnn")) == 2  # the artifacts are there, hashes checked


def test_interrupted_run_resumes(zoo_file, local_run, tmp_path):
    path, cache_dir = zoo_file
    out = tmp_path / "resumed"
    proc = zoo_command(path, "-o", out, "--workers", 1, "--cache", cache_dir)
    status = out / "zoo-status.json"
    deadline = time.monotonic() + 300
    finished = []
    while time.monotonic() < deadline and len(finished) < 2:
        time.sleep(0.5)
        try:
            models = json.loads(status.read_text())["models"]
        except (OSError, ValueError, KeyError):
            continue
        finished = [n for n, e in models.items() if e["state"] not in ("pending", "running", "interrupted")]
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    code, stdout, _ = finish(proc, 120)
    assert code == 130, stdout
    assert "FAILED (interrupted:" in stdout.strip().splitlines()[-1] and "--resume" in stdout
    models = json.loads(status.read_text())["models"]
    done = {n for n, e in models.items() if e["state"] not in ("pending", "running", "interrupted")}
    assert set(finished) <= done and len(done) < len(EXPECTED)
    assert "running" not in {e["state"] for e in models.values()}
    assert not (out / "scorecard.json").exists()
    time.sleep(1)
    leftovers = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "an interrupted run left model processes running"

    code, stdout, stderr = finish(zoo_command(path, "-o", out, "--workers", 2, "--cache", cache_dir, "--resume"))
    assert code == 4, stdout + stderr
    card = card_of(out)
    assert states(card) == EXPECTED
    resumed = {m["name"] for m in card["models"] if m["resumed"]}
    assert resumed == done
    assert f"resuming: {len(done)} of 8 models already finished" in stderr


def test_resume_of_a_finished_zoo_runs_nothing_and_passes(local_run, tmp_path):
    """The passing models alone, resumed from the local run's status file: nothing runs, PASSED, exit 0."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(local_run[3], out)
    head, _, _ = ZOO.partition("[[model]]")
    models = [block for block in ZOO.split("[[model]]")[1:] if any(f'name = "{n}"' in block for n in ("cnn", "mlp"))]
    (tmp_path / "zoo.toml").write_text(head + "".join("[[model]]" + m for m in models))
    code, stdout, stderr = finish(zoo_command(tmp_path / "zoo.toml", "-o", out, "--resume"))
    assert code == 0, stdout + stderr
    assert stdout.strip().splitlines()[-1] == f"PASSED (2 models: 2 passed) - scorecard: {out / 'scorecard.json'}"
    card = card_of(out)
    assert [(m["name"], m["resumed"], len(m["targets"])) for m in card["models"]] == [
        ("cnn", True, 2),
        ("mlp", True, 2),
    ]
    assert "started" not in stderr and card["passed"] is True


def test_timing_alone_stops_every_other_model(tmp_path, monkeypatch):
    others = [subprocess.Popen(["sleep", "60"], process_group=0) for _ in range(2)]
    try:
        for proc in others:
            timing.register(tmp_path, proc.pid)
        monkeypatch.setenv(timing.ENV, str(tmp_path))
        with timing.alone():
            assert all(timing.is_paused(p.pid) for p in others)
        assert not any(timing.is_paused(p.pid) for p in others)
        # A timer killed mid-measurement leaves them stopped; the watcher's resume_all continues them.
        for proc in others:
            os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(0.2)
        timing.resume_all(tmp_path)
        time.sleep(0.2)
        assert not any(timing.is_paused(p.pid) for p in others)
    finally:
        for proc in others:
            proc.kill()
            proc.wait()


def test_timing_alone_does_nothing_outside_a_zoo(monkeypatch):
    monkeypatch.delenv(timing.ENV, raising=False)
    with timing.alone():
        pass


def test_cache_key_follows_weights_and_versions(monkeypatch):
    from ondevice.api import _source
    from tests import models

    options = {"to": ["onnx"], "quantize": None}
    base = _source(*models.cnn())
    key, parts = cache.key_for(base, options)
    assert cache.key_for(_source(*models.cnn()), options)[0] == key  # same weights: same key
    assert cache.key_for(_source(*models.cnn_other_weights()), options)[0] != key
    assert cache.key_for(base, {**options, "quantize": ["fp16"]})[0] != key
    assert parts["packages"]["torch"]
    real = cache._lazy.package_versions
    monkeypatch.setattr(cache._lazy, "package_versions", lambda *names: {**real(*names), "onnxruntime": "0.0.1"})
    assert cache.key_for(base, options)[0] != key


def test_zoo_file_errors_are_one_line(tmp_path, capsys):
    bad = {
        "unknown option": ('[[model]]\nsource = "m.onnx"\nsampels = 2\n', "unrecognized arguments: --sampels"),
        "no source": ('[[model]]\nname = "x"\n', "'source' (a SOURCE string) is required"),
        "same name": ('[[model]]\nsource = "a/m.onnx"\n[[model]]\nsource = "b/m.onnx"\n', "two models are named 'm'"),
        "bad value": ('[[model]]\nsource = "m.onnx"\nsamples = 0\n', "must be at least 1"),
        "zoo-level": ('[[model]]\nsource = "m.onnx"\nout = "x"\n', "set by the zoo command"),
        "bad timeout": ('[[model]]\nsource = "m.onnx"\ntimeout = -1\n', "timeout must be a positive number"),
    }
    for case, (text, message) in bad.items():
        path = tmp_path / f"{case.replace(' ', '_')}.toml"
        path.write_text(text)
        assert main(["zoo", str(path), "-o", str(tmp_path / "out")]) == 2, case
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith("FAILED (zoo ") and message in last, (case, last)


def test_module_zoo_and_option_precedence(tmp_path):
    (tmp_path / "zoo.py").write_text(
        "from tests.zoo_models import torch_mlp\n"
        "def small():\n    return torch_mlp()\n"
        "MODELS = ['small', small, {'factory': 'small', 'name': 'tight', 'atol': 1e-6, 'samples': 3},\n"
        "          {'source': 'nets/m.onnx', 'runs': 7}]\n"
        "DEFAULTS = {'samples': 4, 'to': ['onnx']}\n"
    )
    parse, defaults = _model_options()
    with pytest.raises(BadInputError, match="two models are named 'small'"):
        load_zoo(tmp_path / "zoo.py", parse)
    (tmp_path / "zoo.py").write_text((tmp_path / "zoo.py").read_text().replace("'small', small,", "'small',"))
    zoo = load_zoo(tmp_path / "zoo.py", parse)
    assert [m.name for m in zoo.models] == ["small", "tight", "m"]
    assert zoo.models[0].source == f"{tmp_path / 'zoo.py'}:small"
    assert zoo.models[2].source == str(tmp_path / "nets" / "m.onnx")
    assert zoo.models[0].options == {"samples": 4, "to": ["onnx"]}
    assert zoo.models[1].options == {"samples": 3, "to": ["onnx"], "atol": 1e-6}
    from ondevice.zoo.runner import full_options

    command_line = {**defaults, "samples": 2, "runs": 9, "to": ["openvino"]}
    # The model wins over the defaults, which win over the command line, which wins over check's defaults.
    assert full_options(zoo.models[2], command_line)["runs"] == 7
    assert full_options(zoo.models[2], command_line)["samples"] == 4
    assert full_options(zoo.models[0], command_line)["runs"] == 9
    assert full_options(zoo.models[0], command_line)["seed"] == 0


def _target(status="passed", p50=1.0, ci=(0.95, 1.05), size=1000, err=1e-6):
    return {
        "target": "onnx",
        "precision": "fp32",
        "status": status,
        "error": None,
        "strategy": "s",
        "max_abs_err": err,
        "p50_ms": p50,
        "p50_ci95_ms": list(ci),
        "size_bytes": size,
        "from_cache": False,
        "outputs": [
            {
                "name": "y",
                "max_abs_err": err,
                "snr_db": 120.0,
                "cosine": 1.0,
                "atol": 1e-4,
                "passed": status == "passed",
            }
        ],
    }


def _model(name, code=0, state="passed", **target):
    return {
        "name": name,
        "state": state,
        "exit_code": code,
        "verdict": "",
        "targets": [_target(**target)],
        "inputs_sha256": "abc",
        "threads": 2,
        "isa_class": "avx2",
    }


def test_baseline_view_uses_the_gate():
    before = {"models": [_model("a"), _model("b"), _model("c", 1, "failed", status="failed"), _model("gone")]}
    now = [
        _model("a", p50=2.0, ci=(1.9, 2.1)),  # 2x slower, outside both intervals
        _model("b", 1, "failed", status="failed"),  # started failing
        _model("c", size=1200),  # stopped failing, 20% larger
        _model("new"),
    ]
    view = compare(now, before, {})
    rules = sorted((f["model"], f["rule"]) for f in view["failures"])
    assert rules == [
        ("a", "regression.latency_p50"),
        ("b", "regression.newly_failing"),
        ("gone", "regression.missing_model"),
    ]
    assert [c["model"] for c in view["started_failing"]] == ["b", "b"]  # the model, and its target
    assert [c["model"] for c in view["stopped_failing"]] == ["c", "c"]
    latency = {c["model"]: c for c in view["latency"]}
    assert latency["a"]["bucket"] == ">= 2x slower" and latency["a"]["outside_ci"] is True
    assert view["new_models"] == ["new"] and view["exit_code"] == 1
    # Size growth of a model that failed before is no regression; noise inside the intervals is not either.
    noisy = compare([_model("a", p50=1.04, ci=(0.9, 1.2))], {"models": [_model("a")]}, {})
    assert noisy["failures"] == [] and noisy["latency"][0]["bucket"] == "unchanged"


def test_speed_buckets():
    assert [bucket(r) for r in (1.0, 1.09, 1.1, 1.45, 1.5, 3.0, 12.0, 0.5, 0.05)] == [
        "unchanged",
        "unchanged",
        ">= 1.1x slower",
        ">= 1.3x slower",
        ">= 1.5x slower",
        ">= 2x slower",
        ">= 10x slower",
        ">= 2x faster",
        ">= 10x faster",
    ]
