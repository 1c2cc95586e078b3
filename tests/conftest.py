"""Session-scoped conversions shared by the tests: each model is exported once per session."""

from __future__ import annotations

import os

import pytest

import ondevice
from ondevice.core.lazy import quiet_environment
from tests import models

quiet_environment()
TARGETS = ("onnx", "tflite", "openvino")
FACTORY_FILE = os.path.join(os.path.dirname(__file__), "models.py")


def _check_factory(tmp_path_factory, factory):
    """check() of ``factory()``'s model to all three targets: (report, out_dir)."""
    out = tmp_path_factory.mktemp(factory.__name__)
    model, example = factory()
    return ondevice.check(model, example, targets=TARGETS, out_dir=out, runs=20), out


@pytest.fixture(scope="session")
def torch_cnn_check(tmp_path_factory):
    """The bundled CNN."""
    return _check_factory(tmp_path_factory, models.cnn)


@pytest.fixture(scope="session")
def torch_lstm_check(tmp_path_factory):
    return _check_factory(tmp_path_factory, models.lstm)


@pytest.fixture(scope="session")
def torch_two_outputs_check(tmp_path_factory):
    return _check_factory(tmp_path_factory, models.two_outputs)


@pytest.fixture(scope="session")
def keras_cnn_check(tmp_path_factory):
    return _check_factory(tmp_path_factory, models.keras_cnn)


@pytest.fixture(scope="session")
def torch_video_check(tmp_path_factory):
    """The Conv3d model to TFLite by litert-torch only: parity passes, the GPU delegate refuses CONV_3D."""
    out = tmp_path_factory.mktemp("video")
    model, example = models.video()
    return ondevice.check(
        model, example, targets=("tflite",), out_dir=out, runs=10, strategy="torch-tflite-litert"
    ), out


@pytest.fixture(scope="session")
def onnx_cnn_check(tmp_path_factory, torch_cnn_check):
    """The ONNX file exported from the torch CNN, used as a source in its own right."""
    _, torch_out = torch_cnn_check
    out = tmp_path_factory.mktemp("onnx_cnn")
    return ondevice.check(str(torch_out / "model.onnx"), targets=TARGETS, out_dir=out, runs=20), out
