"""Hostile and broken input fails closed: the documented exit code, one line naming the input and what to
do, no traceback, nothing read or written outside the model, the inputs and -o.

Most cases stop before any conversion; the few that run use a tiny ONNX model (MatMul) exported to
ONNX alone, which takes about a second.
"""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ondevice.cli import main

PAYLOAD = '<script>alert("x")</script>" onmouseover="alert(1)'


def tiny_onnx(path: Path, dims=(1, 4)) -> Path:
    """y = x @ W with seeded random weights; ``dims`` is the declared input shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny ONNX source, its checked export (manifest, model.onnx, report.json) and a scratch folder."""
    root = tmp_path_factory.mktemp("tiny")
    source = tiny_onnx(root / "tiny.onnx")
    out = root / "out"
    assert main(["check", str(source), "--to", "onnx", "-o", str(out), "--runs", "2", "--samples", "2"]) == 0
    return source, out


def fails(capfd, args, code, *expected, one_line=True) -> str:
    """Run ``ondevice args`` in-process; assert the exit code, the verdict line and no traceback."""
    got = main([str(a) for a in args])
    out, err = capfd.readouterr()
    assert got == code, out + err
    last = out.strip().splitlines()[-1]
    assert last.startswith("FAILED ("), out
    assert "Traceback" not in out + err
    if one_line:
        assert out.strip().count("\n") == 0, out
    for text in expected:
        assert text in last, last
    return last


def copy_export(tiny, tmp_path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(tiny[1], folder)
    return folder


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def real_report(tiny) -> dict:
    return json.loads((tiny[1] / "report.json").read_text())


# ---- arguments: refused while parsing (exit 2), the verdict line last, nothing created -------------


@pytest.mark.parametrize(
    "args,expected",
    [
        (["check", "m.onnx", "--atol", "nan"], "--atol: 'nan' must be a finite number >= 0"),
        (["check", "m.onnx", "--atol", "-1"], "--atol: '-1' must be a finite number >= 0"),
        (["validate", "m.onnx", "OUT", "--rtol", "inf"], "--rtol: 'inf' must be a finite number >= 0"),
        (["check", "m.onnx", "--seed", "-1"], "--seed: '-1' must be at least 0"),
        (["check", "m.onnx", "--runs", "0"], "--runs: '0' must be at least 1"),
        (["check", "m.onnx", "--samples", "0"], "--samples: '0' must be at least 1"),
        (["validate", "m.onnx", "OUT", "--samples", "-3"], "--samples: '-3' must be at least 1"),
        (["export", "m.onnx", "--threads", "0"], "--threads: '0' must be at least 1"),
        (["check", "m.onnx", "--timeout", "0"], "--timeout: '0' must be a positive number of seconds"),
        (["check", "m.onnx", "--timeout", "nan"], "--timeout: 'nan' must be a positive number of seconds"),
        (["export", "m.onnx", "--to", "unknown"], "unknown target(s) unknown"),
        (["export", "m.onnx", "--to", ","], "unknown target(s) (none)"),
        (["check", "--to", "onnx"], "the following arguments are required: source"),
        (["gate"], "the following arguments are required: report"),
        (["report", "r.json", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["check", "m.onnx", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_end_with_the_verdict_line(args, expected, tmp_path, capfd):
    out = tmp_path / "o"
    if args and args[0] in ("check", "export"):
        args = [*args, "-o", out]
    fails(capfd, args, 2, "bad invocation", expected, one_line=True)
    assert not out.exists()


# ---- sources: names, shapes and sizes ------------------------------------------------------------


def test_unknown_input_name_is_refused(tiny, tmp_path, capfd):
    fails(
        capfd,
        ["check", tiny[0], "--input", "nosuch:1x4", "--to", "onnx", "-o", tmp_path / "o"],
        2,
        "--input nosuch: the model has no input 'nosuch'; its inputs are x",
    )


def test_unknown_input_name_of_a_factory_is_refused(tmp_path, capfd):
    from tests.conftest import FACTORY_FILE

    fails(
        capfd,
        [
            "check",
            f"{FACTORY_FILE}:two_outputs",
            "--input",
            "image:1x3x16x16",
            "--input",
            "nosuch:1x4",
            "--to",
            "onnx",
            "-o",
            tmp_path / "o",
        ],
        2,
        "the model has no input 'nosuch'; its inputs are image, features",
    )


@pytest.mark.parametrize(
    "dims,expected",
    [
        ((1, -4), "declares shape [1, -4]; a dimension must be a positive integer"),
        ((0, 4), "declares shape [0, 4]; a dimension must be a positive integer"),
        ((1, 2**31), "has dimension 2147483648, above 2^31-1"),
        ((65536, 65536, 65536), "more than the"),
    ],
)
def test_onnx_input_shapes_that_cannot_be_run(dims, expected, tmp_path, capfd):
    source = tiny_onnx(tmp_path / "m.onnx", dims)
    fails(capfd, ["check", source, "--to", "onnx", "-o", tmp_path / "o"], 2, str(source), expected)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("x:1x3x65536x65536", "need 48 GiB, more than the"),
        ("x:1x2147483648", "has dimension 2147483648, above 2^31-1"),
    ],
)
def test_input_too_large_is_refused_before_allocating(spec, expected, tiny, tmp_path, capfd):
    fails(
        capfd, ["check", tiny[0], "--input", spec, "--to", "onnx", "-o", tmp_path / "o"], 2, f"--input {spec}", expected
    )


def test_too_many_samples_for_memory_is_refused_before_allocating(tiny, tmp_path, capfd):
    args = [
        "validate",
        tiny[0],
        tiny[1],
        "--input",
        "x:1x16777216",
        "--samples",
        "100000",
        "--report",
        tmp_path / "r.json",
    ]
    got = main([str(a) for a in args])
    out = capfd.readouterr().out
    assert got == 2 and "100000 sample(s) of x 1x16777216 float32 need" in out and "fewer --samples" in out
    assert not (tmp_path / "r.json").exists()


def test_model_path_that_is_a_folder(tmp_path, capfd):
    (tmp_path / "m.onnx").mkdir()
    fails(
        capfd,
        ["check", tmp_path / "m.onnx", "--to", "onnx", "-o", tmp_path / "o"],
        2,
        "is a folder but not a SavedModel",
    )


def test_model_path_that_is_a_device(tmp_path, capfd):
    """/dev/zero behind a model name would be read forever: refused before reading."""
    (tmp_path / "m.pt2").symlink_to("/dev/zero")
    fails(capfd, ["check", tmp_path / "m.pt2", "--to", "onnx", "-o", tmp_path / "o"], 2, "is not a regular file")


FACTORIES = """
import sys
def exits():
    sys.exit(0)
def exits_3():
    sys.exit(3)
"""


@pytest.mark.parametrize(
    "name,expected",
    [
        ("exits", "called sys.exit(0) instead of returning a model"),
        ("exits_3", "called sys.exit(3) instead of returning a model"),
    ],
)
def test_factory_that_exits_fails_closed_in_process(name, expected, tmp_path, capfd):
    (tmp_path / "f.py").write_text(FACTORIES)
    fails(capfd, ["check", f"{tmp_path / 'f.py'}:{name}", "--to", "onnx", "-o", tmp_path / "o"], 2, expected)


def test_factory_module_that_exits_on_import(tmp_path, capfd):
    (tmp_path / "g.py").write_text("import sys\nsys.exit(0)\n")
    fails(
        capfd,
        ["check", f"{tmp_path / 'g.py'}:build", "--to", "onnx", "-o", tmp_path / "o"],
        2,
        "called sys.exit(0); a factory module must define the factory",
    )


def test_model_forward_that_exits_fails_closed(tmp_path, capfd):
    (tmp_path / "h.py").write_text(
        "import sys, torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n        sys.exit(0)\n"
        "def build():\n    return M(), torch.ones(1, 4)\n"
    )
    fails(
        capfd,
        ["check", f"{tmp_path / 'h.py'}:build", "--to", "onnx", "-o", tmp_path / "o"],
        4,
        "user code called sys.exit(0) during the run; nothing was checked",
    )


def test_timeout_in_process(tmp_path, capfd):
    (tmp_path / "slow.py").write_text("import time\ndef build():\n    time.sleep(60)\n")
    fails(
        capfd,
        ["check", f"{tmp_path / 'slow.py'}:build", "--to", "onnx", "-o", tmp_path / "o", "--timeout", "1"],
        4,
        "timed out after 1 s",
    )


# ---- .npz inputs and calibration ----------------------------------------------------------------


def _npz(tmp_path, name="bad.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, allow_pickle=True, **arrays) if any(a.dtype == object for a in arrays.values()) else np.savez(
        path, **arrays
    )
    return path


def _huge_header_npz(tmp_path) -> Path:
    """An .npz whose array header claims 2^40 floats over a few real bytes (a small file, a huge array)."""
    path = tmp_path / "huge.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (2**20, 2**20)
    buffer = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", buffer.getvalue() + b"\0" * 64)
    return path


@pytest.mark.parametrize(
    "kind,expected",
    [
        ("object", "has dtype object (pickled objects or text); ondevice never unpickles input files"),
        ("text", "has dtype <U5"),
        ("scalar", "is a scalar; the first axis must index the samples"),
        ("npy", "is a single .npy array, not an .npz"),
        ("folder", "Is a directory"),
        ("missing", "lacks arrays for x (has other)"),
        ("huge", "needs 4.1e+03 GiB, more than this machine can spare"),
    ],
)
def test_bad_inputs_file(kind, expected, tiny, tmp_path, capfd):
    path = {
        "object": lambda: _npz(tmp_path, x=np.array([{"a": 1}], dtype=object)),
        "text": lambda: _npz(tmp_path, x=np.array(["hello"])),
        "scalar": lambda: _npz(tmp_path, x=np.float32(1)),
        "npy": lambda: (np.save(tmp_path / "a.npy", np.ones((2, 1, 4), np.float32)), tmp_path / "a.npy")[1],
        "folder": lambda: tmp_path,
        "missing": lambda: _npz(tmp_path, other=np.ones((2, 1, 4), np.float32)),
        "huge": lambda: _huge_header_npz(tmp_path),
    }[kind]()
    fails(
        capfd, ["validate", tiny[0], tiny[1], "--inputs", path, "--report", tmp_path / "r.json"], 2, str(path), expected
    )


def test_pickled_calibration_file(tiny, tmp_path, capfd):
    path = _npz(tmp_path, x=np.array([{"a": 1}], dtype=object))
    fails(
        capfd,
        ["export", tiny[0], "--to", "onnx", "--quantize", "int8", "--calibration", path, "-o", tmp_path / "o"],
        2,
        f"calibration file {path}",
        "never unpickles",
    )


# ---- manifests ---------------------------------------------------------------------------------


def _outside(tmp_path) -> Path:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    return secret


MANIFEST_CASES = {
    "future schema": (lambda d, o: d.update(schema_version=999), "has schema_version 999; this ondevice reads 1"),
    "no schema": (lambda d, o: d.pop("schema_version"), "has schema_version None"),
    "absolute path": (lambda d, o: d["artifacts"][0].update(path=str(o)), "is absolute; artifacts must lie inside"),
    "climbing path": (lambda d, o: d["artifacts"][0].update(path="../secret.bin"), "climbs out of"),
    "climbing side file": (
        lambda d, o: d["artifacts"][0].update(files=[{"path": "../secret.bin", "sha256": "0"}]),
        "artifact file: path '../secret.bin' climbs out of",
    ),
    "absolute side file": (
        lambda d, o: d["artifacts"][0].update(files=[{"path": str(o), "sha256": "0"}]),
        "is absolute",
    ),
    "unknown target": (lambda d, o: d["artifacts"][0].update(target="evil"), "unknown target 'evil'"),
    "climbing float artifact": (
        lambda d, o: d["artifacts"][0].update(float_artifact="../../x.onnx"),
        "float_artifact: path '../../x.onnx' climbs out",
    ),
    "failure claiming a pass": (
        lambda d, o: d.update(failures=[{"target": "tflite", "status": "passed", "error": ""}]),
        "'failures' must list targets that failed to export",
    ),
    "artifacts not a list": (lambda d, o: d.update(artifacts={"a": 1}), "'artifacts' must be a list of objects"),
    "artifact entry incomplete": (lambda d, o: d["artifacts"][0].pop("sha256"), "malformed manifest"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_bad_manifest_is_refused(case, tiny, tmp_path, capfd):
    folder = copy_export(tiny, tmp_path)
    change, expected = MANIFEST_CASES[case]
    outside = _outside(tmp_path)
    edit_manifest(folder, lambda data: change(data, outside))
    (folder / "report.json").unlink()
    fails(capfd, ["validate", tiny[0], folder], 2, "manifest", expected)
    assert not (folder / "report.json").exists()


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe\x00garbage", b"[" * 100000 + b"]" * 100000])
def test_unreadable_manifest_is_refused(content, tiny, tmp_path, capfd):
    folder = copy_export(tiny, tmp_path)
    (folder / "manifest.json").write_bytes(content)
    fails(capfd, ["validate", tiny[0], folder], 2, "malformed manifest")


def test_manifest_that_is_a_folder(tiny, tmp_path, capfd):
    folder = copy_export(tiny, tmp_path)
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").mkdir()
    fails(capfd, ["validate", tiny[0], folder], 2, "is a folder, not a manifest file")


def test_artifact_linked_outside_the_export_is_refused(tiny, tmp_path, capfd):
    folder = copy_export(tiny, tmp_path)
    outside = tmp_path / "elsewhere.onnx"
    (folder / "model.onnx").rename(outside)
    (folder / "model.onnx").symlink_to(outside)
    fails(capfd, ["validate", tiny[0], folder], 2, "is a link that leads outside")


def test_artifact_that_is_a_folder(tiny, tmp_path, capfd):
    folder = copy_export(tiny, tmp_path)
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").mkdir()
    fails(capfd, ["validate", tiny[0], folder], 2, "does not match the sha256 in its manifest")


# ---- report.json and baselines (gate, report) -----------------------------------------------------

REPORT_CASES = {
    "array": (lambda d: [d], "a JSON object is expected, not list"),
    "no targets": (lambda d: {k: v for k, v in d.items() if k != "targets"}, "'targets' must be a list"),
    "targets not a list": (lambda d: {**d, "targets": {"onnx": 1}}, "'targets' must be a list"),
    "unknown status": (
        lambda d: {**d, "targets": [{**d["targets"][0], "status": "great"}]},
        "needs a target name and a status in passed",
    ),
    "future schema": (lambda d: {**d, "schema_version": 999}, "has schema_version 999, expected 1"),
    "text error number": (
        lambda d: {**d, "targets": [{**d["targets"][0], "parity": {"outputs": [{"name": "y", "max_abs_err": "0"}]}}]},
        "max_abs_err must be a number",
    ),
    "text latency": (
        lambda d: {**d, "targets": [{**d["targets"][0], "latency": {"p50_ms": "fast"}}]},
        "latency must be an object with a numeric p50_ms",
    ),
    "bad histogram": (
        lambda d: {
            **d,
            "targets": [
                {
                    **d["targets"][0],
                    "parity": {
                        "outputs": [{"name": "y", "max_abs_err": 0.1, "abs_err_hist": {"counts": [1, 2], "edges": [0]}}]
                    },
                }
            ],
        },
        "abs_err_hist must hold counts and edges",
    ),
    "source not an object": (lambda d: {**d, "source": "x"}, "'source' must be an object"),
    "lone surrogate": (lambda d: {**d, "targets": [{**d["targets"][0], "error": "\ud800"}]}, "not valid Unicode"),
}


@pytest.mark.parametrize("command", ["gate", "report"])
@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_bad_report_is_refused(case, command, tiny, tmp_path, capfd):
    change, expected = REPORT_CASES[case]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(change(real_report(tiny))))
    fails(capfd, [command, path], 2, str(path), expected)


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"\xff\xfe garbage", "malformed report"),
        (b"[" * 100000 + b"]" * 100000, "RecursionError"),
        (b'{"schema_version": 1e999999}', "has schema_version inf"),
    ],
)
def test_unreadable_report_is_refused(content, expected, tmp_path, capfd):
    (tmp_path / "r.json").write_bytes(content)
    fails(capfd, ["gate", tmp_path / "r.json"], 2, expected)


def test_report_that_is_a_folder(tmp_path, capfd):
    fails(capfd, ["report", tmp_path], 2, "is a folder; give the report.json file")


@pytest.mark.parametrize("baseline", ["folder", "array"])
def test_bad_baseline_is_refused(baseline, tiny, tmp_path, capfd):
    path = tmp_path
    if baseline == "array":
        path = tmp_path / "old.json"
        path.write_text("[]")
    fails(capfd, ["gate", tiny[1] / "report.json", "--baseline", path], 2, "baseline: ")


# ---- policies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,expected",
    [
        ("[size]\nmax_bytes = 1" + "0" * 400, "max_bytes must be a finite number, not 1000000000"),
        ("[size]\nmax_bytes = 1" + "0" * 5000, "is not valid TOML: Exceeds the limit"),
        ("a = " + "[" * 5000 + "]" * 5000, "nests too deeply"),
        ("[parity]\natol = nan", "atol must be a finite number, not nan"),
        (None, "is a folder; give the gate.toml file"),
    ],
)
def test_bad_policy_is_refused(content, expected, tiny, tmp_path, capfd):
    path = tmp_path
    if content is not None:
        path = tmp_path / "gate.toml"
        path.write_text(content)
    fails(capfd, ["gate", tiny[1] / "report.json", "--policy", path], 2, expected)


# ---- output paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "export"])
def test_output_folder_under_a_file(command, tiny, tmp_path, capfd):
    (tmp_path / "file").write_text("x")
    fails(capfd, [command, tiny[0], "--to", "onnx", "-o", tmp_path / "file" / "o"], 2, "cannot create -o folder")


def test_output_folder_that_is_a_file(tiny, tmp_path, capfd):
    (tmp_path / "file").write_text("x")
    fails(capfd, ["check", tiny[0], "--to", "onnx", "-o", tmp_path / "file"], 2, "exists and is not a folder")


def test_validate_report_under_a_file(tiny, tmp_path, capfd):
    (tmp_path / "file").write_text("x")
    fails(
        capfd,
        ["validate", tiny[0], tiny[1], "--report", tmp_path / "file" / "r.json"],
        2,
        "--report folder",
        "exists and is not a folder",
    )


@pytest.mark.parametrize("command,option", [("report", "-o"), ("gate", "--json")])
@pytest.mark.parametrize("where", ["folder", "under a file"])
def test_unwritable_output_file(command, option, where, tiny, tmp_path, capfd):
    (tmp_path / "file").write_text("x")
    target = tmp_path if where == "folder" else tmp_path / "file" / "out.txt"
    expected = "is a folder; give a file path" if where == "folder" else "does not exist"
    fails(capfd, [command, tiny[1] / "report.json", option, target], 2, option, expected)


def test_outputs_never_follow_links_out_of_the_output_folder(tiny, tmp_path, capfd):
    """Links planted in -o where the run writes report.json, report.html and gate.json are replaced;
    the files they point at stay untouched."""
    out = tmp_path / "o"
    out.mkdir()
    victims = {}
    for name in ("report.json", "report.html", "gate.json", "junit.xml"):
        victims[name] = tmp_path / f"victim-{name}"
        victims[name].write_text("precious")
        (out / name).symlink_to(victims[name])
    (tmp_path / "gate.toml").write_text("[require]\ntargets = ['onnx']\n")
    code = main(
        [
            str(a)
            for a in [
                "check",
                tiny[0],
                "--to",
                "onnx",
                "-o",
                out,
                "--runs",
                "2",
                "--samples",
                "2",
                "--policy",
                tmp_path / "gate.toml",
            ]
        ]
    )
    assert code == 0, capfd.readouterr().out
    for name, victim in victims.items():
        assert victim.read_text() == "precious"
        assert (out / name).is_file() and not (out / name).is_symlink()
    assert json.loads((out / "gate.json").read_text())["passed"] is True


def test_failed_run_leaves_no_previous_verdict(tiny, tmp_path, capfd):
    """A run that fails before writing removes the previous run's PASSED report and manifest."""
    out = tmp_path / "o"
    shutil.copytree(tiny[1], out)
    (out / "gate.json").write_text('{"passed": true}')
    fails(capfd, ["check", tmp_path / "missing.onnx", "--to", "onnx", "-o", out], 2, "model not found")
    for name in ("report.json", "report.md", "report.html", "junit.xml", "gate.json", "manifest.json"):
        assert not (out / name).exists(), name
    assert (out / "model.onnx").exists(), "artifacts are the export's to replace, not removed here"


def test_failed_validate_leaves_no_previous_report(tiny, tmp_path, capfd):
    folder = copy_export(tiny, tmp_path)
    report = tmp_path / "v" / "r.json"
    report.parent.mkdir()
    report.write_text(json.dumps(real_report(tiny)))
    (report.parent / "r.html").write_text("PASSED")
    fails(capfd, ["validate", tmp_path / "missing.onnx", folder, "--report", report], 2, "model not found")
    assert not report.exists() and not (report.parent / "r.html").exists()
    assert (folder / "manifest.json").exists(), "validate's input manifest is not a previous verdict"


# ---- renderers: everything a report holds is escaped -------------------------------------------


def _poisoned(tiny) -> dict:
    """A real report with every free-text field replaced by markup."""
    data = real_report(tiny)

    def poison(value, key=None):
        if isinstance(value, dict):
            return {k: poison(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [poison(v, key) for v in value]
        if isinstance(value, str) and key not in ("status", "quantize"):
            return PAYLOAD
        return value

    data = poison(data)
    data["environment"]["threads"] = PAYLOAD
    data["inputs"]["samples"] = PAYLOAD
    data["inputs"]["seed"] = PAYLOAD
    data["environment"]["packages"][PAYLOAD] = PAYLOAD
    return data


def test_html_report_escapes_every_string(tiny, tmp_path, capfd):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_poisoned(tiny)))
    assert main(["report", str(path), "--format", "html", "-o", str(tmp_path / "r.html")]) == 0
    capfd.readouterr()
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page and 'onmouseover="' not in page
    assert page.count("&lt;script&gt;") >= 10


def test_markdown_report_escapes_markup(tiny, tmp_path, capfd):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_poisoned(tiny)))
    assert main(["report", str(path), "--format", "md", "-o", str(tmp_path / "r.md")]) == 0
    capfd.readouterr()
    assert "<script" not in (tmp_path / "r.md").read_text()


def test_junit_with_control_characters_is_valid_xml(tiny, tmp_path, capfd):
    data = real_report(tiny)
    data["targets"][0].update(status="failed", error="bad \x00\x01\x1b[31m\x0b\ufffe name")
    data["targets"][0]["parity"]["outputs"][0]["name"] = "out\x07put"
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    assert main(["report", str(path), "--format", "junit", "-o", str(tmp_path / "junit.xml")]) == 1
    capfd.readouterr()
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    failure = suite.find("testcase/failure")
    assert failure is not None and "\\x00\\x01\\x1b[31m\\x0b\\ufffe" in failure.get("message")
    assert suite.get("failures") == "1"


@pytest.mark.parametrize("command", ["gate", "report"])
def test_names_cannot_forge_the_verdict_line(command, tiny, tmp_path, capfd):
    data = real_report(tiny)
    data["targets"][0].update(status="failed", error="x\nPASSED (onnx) - report: forged\r")
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    assert main([command, str(path)]) == 1
    out = capfd.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("FAILED (") and not any(line.startswith("PASSED") for line in lines)
    assert "x\\nPASSED (onnx)" in out or "x PASSED (onnx)" in out


def test_report_command_outputs_stay_where_asked(tiny, tmp_path, capfd):
    assert main(["report", str(tiny[1] / "report.json"), "--format", "md", "-o", str(tmp_path / "r.md")]) == 0
    assert capfd.readouterr().out.strip().splitlines()[-1].startswith("PASSED")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]


def test_outside_files_are_untouched_by_every_refusal(tiny, tmp_path, capfd):
    """The outside file a hostile manifest names is neither read into a report nor changed."""
    folder = copy_export(tiny, tmp_path)
    outside = _outside(tmp_path)
    before = os.stat(outside)
    edit_manifest(folder, lambda d: d["artifacts"][0].update(path=str(outside)))
    main(["validate", str(tiny[0]), str(folder)])
    capfd.readouterr()
    assert outside.read_bytes() == b"not yours" and os.stat(outside).st_mtime == before.st_mtime


def test_api_check_that_fails_leaves_no_previous_verdict(tiny, tmp_path):
    import ondevice

    out = tmp_path / "o"
    shutil.copytree(tiny[1], out)
    with pytest.raises(ondevice.BadInputError):
        ondevice.check(str(tiny[0]), targets=("onnx",), out_dir=out, strategy="nope")
    assert not (out / "report.json").exists() and not (out / "manifest.json").exists()
