"""Session-scoped conversions shared by the tests: each model is exported once per session."""
from __future__ import annotations

import os

import pytest

import ondevice
from ondevice._lazy import quiet_environment
from tests import models

quiet_environment()
TARGETS = ("onnx", "tflite", "openvino")
FACTORY_FILE = os.path.join(os.path.dirname(__file__), "models.py")


@pytest.fixture(scope="session")
def torch_cnn_check(tmp_path_factory):
    """check() of the bundled CNN to all three targets: (report, out_dir)."""
    out = tmp_path_factory.mktemp("torch_cnn")
    model, example = models.cnn()
    return ondevice.check(model, example, targets=TARGETS, out_dir=out, runs=20), out


@pytest.fixture(scope="session")
def torch_lstm_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_lstm")
    model, example = models.lstm()
    return ondevice.check(model, example, targets=TARGETS, out_dir=out, runs=20), out


@pytest.fixture(scope="session")
def torch_two_outputs_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("torch_two")
    model, example = models.two_outputs()
    return ondevice.check(model, example, targets=TARGETS, out_dir=out, runs=20), out


@pytest.fixture(scope="session")
def keras_cnn_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras_cnn")
    model, example = models.keras_cnn()
    return ondevice.check(model, example, targets=TARGETS, out_dir=out, runs=20), out


@pytest.fixture(scope="session")
def onnx_cnn_check(tmp_path_factory, torch_cnn_check):
    """The ONNX file exported from the torch CNN, used as a source in its own right."""
    _, torch_out = torch_cnn_check
    out = tmp_path_factory.mktemp("onnx_cnn")
    return ondevice.check(str(torch_out / "model.onnx"), targets=TARGETS, out_dir=out, runs=20), out
