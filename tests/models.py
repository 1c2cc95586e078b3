"""Tiny models with seeded random weights, as factories usable from the CLI (tests/models.py:NAME)."""

from __future__ import annotations

import numpy as np


def _torch():
    import torch
    from torch import nn

    return torch, nn


def cnn():
    """The bundled example CNN (conv, depthwise conv, BN, pooling, linear)."""
    from ondevice.examples.tiny_cnn import build

    return build()


def outlier_mlp():
    """An MLP whose third layer makes two outlier features, 60x the others (the layer after it scales them
    back down), as the outlier features of large transformers: float is exact, but int8 activations
    quantized per tensor round the 14 small features to a few levels, and plain int8 fails parity on every
    target. Keeping ``project`` (and, where the quantizer quantizes a node's output, ``expand``) in float
    fixes it for 7% of the weight bytes."""
    torch, nn = _torch()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(32, 192)
            self.fc2 = nn.Linear(192, 192)
            self.expand = nn.Linear(192, 16)
            self.act = nn.ReLU()
            self.project = nn.Linear(16, 8)
            with torch.no_grad():
                self.expand.weight[:2] *= 60.0
                self.expand.bias[:2] = 60.0
                self.project.weight[:, :2] /= 60.0

        def forward(self, x):
            hidden = torch.relu(self.fc2(torch.relu(self.fc1(x))))
            return self.project(self.act(self.expand(hidden)))

    torch.manual_seed(21)
    return Net().eval(), torch.randn(1, 32)


def cnn_other_weights():
    """The same architecture as cnn() with different weights: validation against it must fail."""
    torch, _ = _torch()
    model, example = cnn()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model, example


def lstm():
    """A 2-layer LSTM over a 10-step sequence, with a linear head."""
    torch, nn = _torch()

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 16, num_layers=2, batch_first=True)
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out)

    torch.manual_seed(1)
    return Tagger().eval(), torch.randn(1, 10, 8)


def two_outputs():
    """Two inputs (image and features), two outputs (logits and an embedding)."""
    torch, nn = _torch()

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8 + 4, 6)
            self.emb = nn.Linear(8, 5)

        def forward(self, image, features):
            pooled = torch.relu(self.conv(image)).mean(dim=(2, 3))
            return self.fc(torch.cat([pooled, features], dim=1)), self.emb(pooled)

    torch.manual_seed(2)
    return TwoHeads().eval(), (torch.rand(1, 3, 16, 16), torch.randn(1, 4))


def dead_relu():
    """A model whose output is always zero: parity on it proves nothing."""
    torch, nn = _torch()
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU()).eval()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    return model, torch.randn(1, 8)


def nan_output():
    """A model whose output is NaN for most inputs (log of a negative number)."""
    torch, nn = _torch()

    class LogNeg(nn.Module):
        def forward(self, x):
            return torch.log(x - 10.0)

    return LogNeg().eval(), torch.randn(1, 8)


def raises():
    """A factory that fails."""
    raise RuntimeError("weights file is corrupt")


def keras_cnn():
    """A small Keras image model (NHWC), seeded."""
    import keras

    keras.utils.set_random_seed(4)
    inputs = keras.Input((24, 24, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    model = keras.Model(inputs, outputs)
    return model, np.random.default_rng(4).random((1, 24, 24, 3), dtype=np.float32)


def transformer():
    """A one-layer TransformerEncoder over 6 tokens of width 16, mean-pooled into 5 classes."""
    torch, nn = _torch()

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            return self.head(self.encoder(x).mean(dim=1))

    torch.manual_seed(5)
    return Classifier().eval(), torch.randn(1, 6, 16)


def keras_lstm():
    """A Keras 3 LSTM over 10 steps of 8 features with a dense head (int8 TFLite calibration of it segfaults)."""
    import keras

    keras.utils.set_random_seed(6)
    inputs = keras.Input((10, 8), batch_size=1, name="sequence")
    x = keras.layers.LSTM(16)(inputs)
    outputs = keras.layers.Dense(4, name="scores")(x)
    model = keras.Model(inputs, outputs)
    return model, np.random.default_rng(6).normal(size=(1, 10, 8)).astype(np.float32)


def keras_tagger():
    """A bidirectional Keras LSTM tagging each of 6 steps: onnxruntime's symbolic shape inference cannot
    complete its ONNX form (a Loop), the case where its quantization tools write temporaries to the cwd."""
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((6, 8), batch_size=1, name="steps")
    x = keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True))(inputs)
    outputs = keras.layers.Dense(4, name="tags")(x)
    model = keras.Model(inputs, outputs)
    return model, np.random.default_rng(7).normal(size=(1, 6, 8)).astype(np.float32)


def video():
    """A Conv3d clip classifier (3 channels, 4 frames of 8x8): its TFLite CONV_3D has no GPU delegate kernel."""
    torch, nn = _torch()

    class Clip(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, 5)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))

    torch.manual_seed(8)
    return Clip().eval(), torch.randn(1, 3, 4, 8, 8)


def gelu_mlp():
    """Linear -> tanh-GELU: the dynamo ONNX exporter emits one Gelu node (no NNAPI kernel), the TorchScript
    exporter at opset 17 its Tanh/Pow/Mul/Add decomposition (all NNAPI ops)."""
    torch, nn = _torch()

    class Mlp(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return torch.nn.functional.gelu(self.fc(x), approximate="tanh")

    torch.manual_seed(9)
    return Mlp().eval(), torch.randn(1, 8)


def chaotic_mlp(depth: int = 20):
    """A deep tanh MLP whose weights (std 3/sqrt(width)) put it in the chaotic regime: a change of one
    unit in the last place of its input grows about 1.4x per layer, to ~1e-3 at the output after 20, as
    a random-weight EfficientNet's does. Every runtime's summation order makes such changes, so plain
    fp32 atol (1e-4) fails a correct export; the source's own rounding noise is the floor."""
    torch, nn = _torch()
    torch.manual_seed(5)
    layers = []
    for _ in range(depth):
        linear = nn.Linear(32, 32)
        with torch.no_grad():
            linear.weight.normal_(0.0, 3.0 / 32**0.5)
            linear.bias.zero_()
        layers += [linear, nn.Tanh()]
    return nn.Sequential(*layers).eval(), torch.randn(1, 32)


def chaotic_mlp_changed():
    """chaotic_mlp with one weight of its first layer changed by 1e-2: a wrong export, which its noise
    floor must not hide."""
    torch, _ = _torch()
    model, example = chaotic_mlp()
    with torch.no_grad():
        model[0].weight[0, 0] += 1e-2
    return model, example
