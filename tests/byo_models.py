"""Tiny models for artifacts made outside ondevice, and the plain converter calls that make them.

The factories are usable from the CLI (``tests/byo_models.py:torch_two_streams``). Each ``plain_*``
function is the call a user's own conversion script makes, with that converter's defaults: no input
names, no layout options, OpenVINO's save_model compressing weights to fp16.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


def torch_two_streams():
    """A Transformer encoder over tokens, conditioned on an image: two inputs (1x6x16 and a 1x3x8x8 image),
    two outputs (class logits 1x5 and the encoded sequence 1x6x16)."""
    import torch
    from torch import nn

    class TwoStreams(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches = nn.Conv2d(3, 16, 4, stride=4)
            layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
            self.head = nn.Linear(16, 5)

        def forward(self, tokens, image):
            context = self.patches(image).mean(dim=(2, 3)).unsqueeze(1)
            encoded = self.encoder(tokens + context)
            return self.head(encoded.mean(dim=1)), encoded

    torch.manual_seed(40)
    return TwoStreams().eval(), (torch.randn(1, 6, 16), torch.rand(1, 3, 8, 8))


def torch_twin_outputs():
    """Two outputs of one shape (1x4): without names, nothing tells them apart."""
    import torch
    from torch import nn

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.left = nn.Linear(8, 4)
            self.right = nn.Linear(8, 4)

        def forward(self, x):
            return self.left(x), self.right(x)

    torch.manual_seed(41)
    return Twin().eval(), torch.randn(1, 8)


def keras_two_inputs():
    """Two inputs and two outputs of one shape each; TFLiteConverter reorders the inputs (b before a)."""
    import keras

    keras.utils.set_random_seed(42)
    a = keras.Input((8,), batch_size=1, name="a")
    b = keras.Input((8,), batch_size=1, name="b")
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([a, keras.layers.Dense(8)(b)]))
    model = keras.Model(
        [a, b], [keras.layers.Dense(4, name="first")(hidden), keras.layers.Dense(4, name="second")(hidden)]
    )
    rng = np.random.default_rng(42)
    return model, [rng.normal(size=(1, 8)).astype(np.float32), rng.normal(size=(1, 8)).astype(np.float32)]


# ---- the plain converters ----------------------------------------------------------------------


def plain_torch_onnx(model, args, path: Path, dynamo: bool) -> Path:
    """``torch.onnx.export(model, args, path, dynamo=...)`` and nothing else."""
    import torch

    from ondevice.core.quiet import quiet

    with quiet():
        torch.onnx.export(model, tuple(args), str(path), dynamo=dynamo)
    return path


def plain_litert_torch(model, args, path: Path) -> Path:
    """``litert_torch.convert(model, args).export(path)``: inputs args_N, outputs output_N."""
    import litert_torch

    from ondevice.core.quiet import quiet

    with quiet():
        litert_torch.convert(model, tuple(args)).export(str(path))
    return path


def plain_onnx2tf(onnx_path: Path, folder: Path) -> Path:
    """``onnx2tf.convert(input_onnx_file_path=..., output_folder_path=...)`` in its own process (repeated
    calls in one process fail), offline: its sample-image download is pre-empted by a file of its name."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy", images)
    code = (
        f"import onnx2tf; onnx2tf.convert(input_onnx_file_path={str(onnx_path)!r}, "
        f"output_folder_path={str(folder / 'saved')!r}, non_verbose=True, not_use_onnxsim=True)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder / "saved" / f"{onnx_path.stem}_float32.tflite"


def plain_openvino(model, path: Path) -> Path:
    """``ov.save_model(ov.convert_model(model), path)``: save_model's default compresses weights to fp16."""
    import openvino as ov

    from ondevice.converters._openvino import _telemetry_off
    from ondevice.core.quiet import quiet

    # Telemetry off only keeps the test offline; the converted model is what convert_model makes.
    with quiet(), _telemetry_off():
        ov.save_model(ov.convert_model(model if not isinstance(model, Path) else str(model)), str(path))
    return path


def plain_keras_tflite(model, path: Path) -> Path:
    """``tf.lite.TFLiteConverter.from_keras_model(model).convert()`` written to ``path``."""
    import tensorflow as tf

    from ondevice.core.quiet import quiet

    with quiet():
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path
