"""The published set (tests/published.py): how its models are built, and a fast subset through every target."""

from __future__ import annotations

import numpy as np
import pytest

import ondevice
from tests import published

TARGETS = ("onnx", "tflite", "openvino")


def test_batch_norm_statistics_come_from_the_batch():
    """After the one training-mode pass, inference on the batch equals training mode on it: every layer's
    statistics are the batch's, the later ones included (they saw normalised inputs in that pass)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dropout(0.5),
            keras.layers.Conv2D(8, 3),
            keras.layers.BatchNormalization(),
        ]
    )
    batch = np.random.default_rng(0).uniform(0, 255, (6, 8, 8, 3)).astype(np.float32)
    untouched = np.asarray(model(batch, training=False))
    published.set_batch_norm_statistics(model, batch)
    inference = np.asarray(model(batch, training=False))
    assert np.abs(untouched).max() > 10  # moving mean 0 and variance 1 left the raw pixel scale through
    assert np.allclose(inference.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    assert np.allclose(inference.std(axis=(0, 1, 2)), 1, atol=1e-2)
    assert [layer.momentum for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)] == [
        0.99,
        0.99,
    ]
    assert model.layers[3].rate == 0.5


def test_the_set_holds_every_listed_family_and_every_keras_application():
    import keras

    names = list(published.published())
    families = {"bert", "distilbert", "roberta", "gpt2", "t5_encoder", "vit", "whisper_encoder", "wav2vec2"}
    assert {f"torch_{f}" for f in families | {"clip_text", "clip_vision"}} <= set(names)
    applications = [n for n in dir(keras.applications) if n[:1].isupper()]
    assert len(applications) >= 40
    assert {f"keras_{n}" for n in applications} <= set(names)
    assert names.index("keras_MobileNetV3Small") < names.index("keras_ConvNeXtXLarge")  # smallest first


def test_gpt2_takes_its_inputs_by_keyword():
    """Positionally, GPT2Model's second parameter is its cache: the mask must reach ``attention_mask``."""
    import torch

    model, example = published.torch_gpt2()
    masked = dict(example)
    masked["attention_mask"] = torch.ones_like(example["attention_mask"])
    with torch.no_grad():
        padded = model(*example.values()).last_hidden_state
        full = model(*masked.values()).last_hidden_state
    # The mask hides the last two tokens from none of the earlier positions (causal), only from themselves on.
    assert torch.allclose(padded[:, :-2], full[:, :-2], atol=1e-6)
    assert not torch.allclose(padded[:, -2:], full[:, -2:], atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["keras_MobileNetV3Small", "torch_bert"])
def test_published_model_passes_float_parity_on_every_target(name, tmp_path):
    model, example = published.published()[name]()
    report = ondevice.check(model, example, targets=TARGETS, out_dir=tmp_path, runs=3)
    assert [t.target for t in report.targets] == list(TARGETS)
    for result in report.targets:
        assert result.status == "passed", (result.target, result.error)
        assert result.parity["samples"] == 8
        for output in result.parity["outputs"]:
            assert output["passed"] is True
            assert output["cosine"] > 0.9999, (result.target, output)
    names = [o["name"] for o in report.targets[0].parity["outputs"]]
    if name == "torch_bert":  # the ModelOutput's fields became the artifact's outputs, by name
        assert names == ["last_hidden_state", "pooler_output"]
