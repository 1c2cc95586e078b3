"""Model files that would run code or touch files when loaded are refused unless trusted: pickles inside a
`.pt2` archive (torch's loader unpickles them, or falls back to full unpickling) and SavedModel graphs with
file-system ops. Each hostile file here would create a marker if its payload ran; none may appear."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest

from ondevice.cli import main
from tests.ondevice.test_hostile import fails


class _Payload:
    """Unpickling this creates a folder: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    """A genuine torch.export archive of a tiny Linear model."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pt2") / "linear.pt2"
    model = torch.nn.Linear(4, 2).eval()
    torch.export.save(torch.export.export(model, (torch.randn(1, 4),)), str(path))
    return path


def _rewrite(src, dst, change):
    """Copy a zip archive member by member through ``change(member, bytes) -> bytes | None``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename.split("/", 1)[1], zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def _pickled(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _weights_as_pickle(marker):
    def change(member, data):
        if member.endswith("_weights_config.json"):
            config = json.loads(data)
            config["config"]["weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        return _pickled(_Payload(marker)) if member == "data/weights/weight_0" else data

    return change


def _sample_inputs_as_pickle(marker):
    return lambda member, data: (
        _pickled(((_Payload(marker),), {})) if member.startswith("data/sample_inputs/") else data
    )


def _guard_code(marker):
    def change(member, data):
        if member.startswith("models/"):
            program = json.loads(data)
            program["guards_code"] = [f"__import__('os').mkdir({str(marker)!r}) or True"]
            return json.dumps(program).encode()
        return data

    return change


def _opaque_constant(marker):
    import pickle

    def change(member, data):
        if member.endswith("_constants_config.json"):
            config = {
                "config": {
                    "c": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
                }
            }
            return json.dumps(config).encode()
        return data

    def with_member(member, data):
        return change(member, data)

    with_member.extra = ("data/constants/opaque_obj_0", pickle.dumps(_Payload(marker)))
    return with_member


def _file_reading_op(marker):
    def change(member, data):
        if member.startswith("models/"):
            return data.replace(b"torch.ops.aten.linear.default", b"torch.ops.aten.from_file.default")
        return data

    return change


def _extra_member(name):
    def change(member, data):
        return data

    change.extra = (name, b"payload")
    return change


PT2_CASES = {
    "pickled weight": (_weights_as_pickle, "'weight' in data/weights/model_weights_config.json is stored as a pickle"),
    "pickled sample inputs": (_sample_inputs_as_pickle, "its sample inputs are not plain tensors"),
    "guard code": (_guard_code, "carries guard code"),
    "opaque constant": (_opaque_constant, "'c' in data/constants/model_constants_config.json is stored as a pickle"),
    "opaque member": (
        lambda m: _extra_member("data/constants/opaque_obj_0"),
        "holds a pickled member 'data/constants/opaque_obj_0'",
    ),
    "file-reading op": (_file_reading_op, "calls torch.ops.aten.from_file.default, which reads files"),
    "legacy pickled weights": (
        lambda m: _extra_member("data/weights/model.pt"),
        "holds a pickled member 'data/weights/model.pt'",
    ),
    "foreign member": (lambda m: _extra_member("code/__torch__.py"), "which is not part of a torch.export archive"),
}


@pytest.mark.parametrize("case", list(PT2_CASES))
def test_pickle_bearing_pt2_is_refused(case, pt2, tmp_path, capfd):
    make, expected = PT2_CASES[case]
    marker = tmp_path / "PAYLOAD_RAN"
    change = make(marker)
    path = _rewrite(pt2, tmp_path / "model.pt2", change)
    if getattr(change, "extra", None):
        with zipfile.ZipFile(path, "a") as archive:
            root = archive.namelist()[0].split("/")[0]
            archive.writestr(f"{root}/{change.extra[0]}", change.extra[1])
    last = fails(capfd, ["check", path, "--to", "onnx", "-o", tmp_path / "o"], 2, str(path), expected)
    assert "--trust-pickle" in last or "refused" in last
    assert not marker.exists(), "the payload ran"


def test_genuine_pt2_passes_inspection(pt2):
    import torch

    from ondevice.trust import check_pt2, check_sample_inputs

    sample = check_pt2(pt2.read_bytes(), str(pt2))
    assert sample
    check_sample_inputs(torch, sample, str(pt2))


def test_trust_pickle_lets_a_pt2_pickle_run(pt2, tmp_path, capfd):
    """The opt-in is real: with --trust-pickle torch unpickles the member (and here the payload runs)."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = _rewrite(pt2, tmp_path / "model.pt2", _sample_inputs_as_pickle(marker))
    main(["check", str(path), "--to", "onnx", "-o", str(tmp_path / "o"), "--trust-pickle"])
    capfd.readouterr()
    assert marker.exists()


# ---- SavedModel graphs -----------------------------------------------------------------------


def _saved_model(folder, body):
    """A SavedModel whose serving signature runs ``body(x)`` (a tf.function graph)."""
    import tensorflow as tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": body(tf, x)}

    module = Module()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def _writes(target):
    def body(tf, x):
        tf.io.write_file(str(target), "owned")
        return x * 2.0

    return body


def _reads(target):
    def body(tf, x):
        return x + tf.cast(tf.strings.length(tf.io.read_file(str(target))), tf.float32) * 0.0

    return body


def _prints(target):
    def body(tf, x):
        tf.print("leak", x, output_stream=f"file://{target}")
        return x * 2.0

    return body


def _nested_write(target):
    def body(tf, x):
        @tf.function
        def inner(v):
            tf.io.write_file(str(target), "owned")
            return v + 1.0

        return tf.cond(tf.reduce_sum(x) > 0, lambda: inner(x), lambda: x)

    return body


@pytest.mark.parametrize(
    "make,expected",
    [
        (_writes, "WriteFile in"),
        (_reads, "ReadFile in"),
        (_prints, "PrintV2 to file://"),
        (_nested_write, "WriteFile in"),
    ],
)
def test_saved_model_with_file_ops_is_refused(make, expected, tmp_path, capfd):
    target = tmp_path / "outside.txt"
    target.write_text("precious")
    folder = _saved_model(tmp_path / "saved", make(target))
    fails(
        capfd,
        ["check", folder, "--to", "onnx", "-o", tmp_path / "o"],
        2,
        f"SavedModel {folder}",
        expected,
        "--trust-graph",
    )
    assert target.read_text() == "precious"


def test_keras_saved_model_passes_inspection(tmp_path):
    """A Keras export carries SaveV2/RestoreV2 in its saver functions only: allowed there."""
    import keras

    from ondevice.trust import check_saved_model

    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).export(
        str(tmp_path / "k"), format="tf_saved_model", verbose=False
    )
    check_saved_model(tmp_path / "k", "k")


def test_saver_ops_reached_from_serving_are_refused(tmp_path):
    """SaveV2 is allowed only where nothing but the SavedModel's own saver reaches it."""
    import tensorflow as tf

    from ondevice.trust import UntrustedInput, check_saved_model

    target = tmp_path / "ckpt"

    def body(tf_, x):
        tf_.raw_ops.SaveV2(prefix=str(target), tensor_names=["x"], shape_and_slices=[""], tensors=[x])
        return x * 2.0

    folder = _saved_model(tmp_path / "saved", body)
    with pytest.raises(UntrustedInput, match="SaveV2 in"):
        check_saved_model(folder, "saved")
    assert not list(tmp_path.glob("ckpt*")) and tf is not None


def test_trust_graph_runs_the_graph(tmp_path):
    """With trust_graph the SavedModel loads and its serving function runs (here: writes its file)."""
    from ondevice.reference import fill_source_outputs
    from ondevice.sources import load_source

    target = tmp_path / "written.txt"
    source = load_source(str(_saved_model(tmp_path / "saved", _writes(target))), trust_graph=True)
    fill_source_outputs(source)
    assert target.read_text() == "owned"


def test_keras_file_naming_a_python_function_is_refused(tmp_path, capfd):
    """A .keras config whose layer names os.mkdir: Keras' safe mode refuses it and nothing runs."""
    import keras

    inputs = keras.Input((4,), name="x")
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(str(tmp_path / "k.keras"))
    with zipfile.ZipFile(tmp_path / "k.keras") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    marker = tmp_path / "PAYLOAD_RAN"
    config["config"]["layers"][1].update(
        module="os", class_name="mkdir", registered_name=None, config={"path": str(marker)}
    )
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    fails(
        capfd,
        ["check", tmp_path / "evil.keras", "--to", "onnx", "-o", tmp_path / "o"],
        2,
        "malformed or truncated Keras file",
    )
    assert not marker.exists()
