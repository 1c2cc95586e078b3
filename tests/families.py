"""One tiny model per family users ship, in PyTorch and in Keras, with seeded random weights.

Each factory returns ``(model, example_inputs)`` and is usable from the CLI
(``ondevice check tests/families.py:torch_unet ...``). Sizes are tiny on purpose (channels <= 16,
sequences <= 8, d_model <= 16): conversions take seconds, yet every op of the family is there.
``TORCH`` and ``KERAS`` list the factories by family name; ``FAMILIES`` is both, prefixed.
"""

from __future__ import annotations

import functools

import numpy as np


def _torch():
    import torch
    from torch import nn

    return torch, nn


# ---- PyTorch ---------------------------------------------------------------------------------


def torch_cnn():
    """Residual CNN: stem conv, depthwise + grouped convs with BatchNorm, a skip add, pooled head."""
    torch, nn = _torch()

    class Block(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
            self.grouped = nn.Conv2d(channels, channels, 1, groups=4)
            self.norm = nn.BatchNorm2d(channels)

        def forward(self, x):
            return torch.relu(x + self.norm(self.grouped(torch.relu(self.depthwise(x)))))

    torch.manual_seed(10)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        Block(16),
        Block(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    _randomise_batchnorm(model)
    return model.eval(), torch.rand(1, 3, 16, 16)


def _randomise_batchnorm(model) -> None:
    # Fresh BatchNorm stats (mean 0, var 1) make it an identity; random ones exercise its folding.
    torch, nn = _torch()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)


def torch_unet():
    """Encoder-decoder: strided-conv downsampling, ConvTranspose upsampling, skip concatenation."""
    torch, nn = _torch()

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
            self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
            self.dec = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))

        def forward(self, image):
            skip = self.enc(image)
            return self.dec(torch.cat([self.up(self.down(skip)), skip], dim=1))

    torch.manual_seed(11)
    return UNet().eval(), torch.rand(1, 3, 16, 16)


def torch_generator():
    """GAN generator from a latent vector: Linear -> view -> ConvTranspose x2 -> tanh image."""
    torch, nn = _torch()

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Linear(16, 16 * 4 * 4)
            self.body = nn.Sequential(
                nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1),
                nn.Tanh(),
            )

        def forward(self, z):
            return self.body(self.project(z).view(-1, 16, 4, 4))

    torch.manual_seed(12)
    model = Generator()
    _randomise_batchnorm(model)
    return model.eval(), torch.randn(1, 16)


def torch_lstm():
    """Stacked bidirectional LSTM tagger (2 layers, both directions) with a linear head per step."""
    torch, nn = _torch()

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 12, num_layers=2, batch_first=True, bidirectional=True)
            self.head = nn.Linear(24, 5)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out)

    torch.manual_seed(13)
    return Tagger().eval(), torch.randn(1, 8, 8)


def torch_gru():
    """GRU sequence classifier: 2-layer GRU, the last step's state into a linear head."""
    torch, nn = _torch()

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(6, 16, num_layers=2, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    torch.manual_seed(14)
    return Classifier().eval(), torch.randn(1, 8, 6)


def torch_transformer():
    """Text Transformer encoder: token ids -> embedding + learned positions -> 2 GELU layers -> LayerNorm."""
    torch, nn = _torch()

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.position = nn.Parameter(torch.randn(1, 8, 16) * 0.1)
            layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, activation="gelu", batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, 4)

        def forward(self, tokens):
            return self.head(self.norm(self.encoder(self.embed(tokens) + self.position)))

    torch.manual_seed(15)
    return Encoder().eval(), torch.randint(0, 50, (1, 8))


def torch_vit():
    """Vision transformer: 4x4 patch conv, a learned class token prepended, GELU encoder, head on the token."""
    return _torch_vit(12)


def torch_vit_square():
    """Not a family: the ViT on 16x16 images, so its 16 patches of width 16 make square tensors.

    onnx2tf cannot tell which axis of a square 3-D tensor it moved: the ONNX -> TFLite route
    converts it with errors near 1 (measured), which validation must catch.
    """
    return _torch_vit(16)


def _torch_vit(side: int):
    torch, nn = _torch()
    tokens = (side // 4) ** 2 + 1

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patches = nn.Conv2d(3, 16, 4, stride=4)
            self.cls_token = nn.Parameter(torch.randn(1, 1, 16) * 0.1)
            self.position = nn.Parameter(torch.randn(1, tokens, 16) * 0.1)
            layer = nn.TransformerEncoderLayer(
                16, 2, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, 5)

        def forward(self, image):
            patches = self.patches(image).flatten(2).transpose(1, 2)
            patches = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)
            return self.head(self.norm(self.encoder(patches + self.position))[:, 0])

    torch.manual_seed(16)
    return ViT().eval(), torch.rand(1, 3, side, side)


def torch_recommender():
    """Recommender: user id, item id and a watch history into embeddings, plus dense features; a score."""
    torch, nn = _torch()

    class Recommender(nn.Module):
        def __init__(self):
            super().__init__()
            self.users = nn.Embedding(30, 8)
            self.items = nn.Embedding(40, 8)
            self.mlp = nn.Sequential(nn.Linear(8 * 3 + 4, 16), nn.ReLU(), nn.Linear(16, 1))

        def forward(self, user, item, history, dense):
            watched = self.items(history).mean(dim=1)
            features = torch.cat([self.users(user), self.items(item), watched, dense], dim=1)
            return torch.sigmoid(self.mlp(features))

    torch.manual_seed(17)
    generator = torch.Generator().manual_seed(17)
    example = (
        torch.randint(0, 30, (1,), generator=generator),
        torch.randint(0, 40, (1,), generator=generator),
        torch.randint(0, 40, (1, 5), generator=generator),
        torch.randn(1, 4, generator=generator),
    )
    return Recommender().eval(), example


def torch_multi_output():
    """Several outputs of different ranks: class logits, a segmentation map and per-row features."""
    torch, nn = _torch()

    class MultiHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.classes = nn.Linear(8, 4)
            self.segment = nn.Conv2d(8, 3, 1)
            self.rows = nn.Linear(8 * 12, 6)

        def forward(self, image):
            features = self.trunk(image)
            rows = features.permute(0, 2, 1, 3).flatten(2)  # (N, H, C*W): a 3-D output
            return self.classes(features.mean(dim=(2, 3))), self.segment(features), self.rows(rows)

    torch.manual_seed(18)
    return MultiHead().eval(), torch.rand(1, 3, 10, 12)


# ---- Keras -----------------------------------------------------------------------------------


def _keras(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    return keras


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def keras_cnn():
    """Residual CNN (NHWC): depthwise and grouped convs with BatchNorm and skip adds."""
    keras = _keras(20)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    for _ in range(2):
        y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        y = layers.Conv2D(16, 1, groups=4)(y)
        y = layers.BatchNormalization(moving_mean_initializer="random_uniform", moving_variance_initializer="ones")(y)
        x = layers.ReLU()(layers.Add()([x, y]))
    outputs = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs), _rng(20).random((1, 16, 16, 3), dtype=np.float32)


def keras_unet():
    """Encoder-decoder: strided conv down, Conv2DTranspose up, skip concatenation."""
    keras = _keras(21)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    skip = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(skip)
    x = layers.Conv2DTranspose(8, 2, strides=2)(x)
    x = layers.Concatenate()([x, skip])
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(2, 1, name="mask")(x)
    return keras.Model(inputs, outputs), _rng(21).random((1, 16, 16, 3), dtype=np.float32)


def keras_generator():
    """GAN generator from a latent vector: Dense -> Reshape -> Conv2DTranspose x2 -> tanh."""
    keras = _keras(22)
    layers = keras.layers
    inputs = keras.Input((16,), name="z")
    x = layers.Reshape((4, 4, 16))(layers.Dense(4 * 4 * 16)(inputs))
    x = layers.Conv2DTranspose(8, 4, strides=2, padding="same")(x)
    x = layers.ReLU()(layers.BatchNormalization(moving_mean_initializer="random_uniform")(x))
    outputs = layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="tanh", name="image")(x)
    return keras.Model(inputs, outputs), _rng(22).standard_normal((1, 16)).astype(np.float32)


def keras_lstm():
    """Stacked LSTM with a bidirectional first layer, a per-step head."""
    keras = _keras(23)
    layers = keras.layers
    inputs = keras.Input((8, 8), name="frames")
    x = layers.Bidirectional(layers.LSTM(12, return_sequences=True))(inputs)
    x = layers.LSTM(12, return_sequences=True)(x)
    outputs = layers.Dense(5, name="tags")(x)
    return keras.Model(inputs, outputs), _rng(23).standard_normal((1, 8, 8)).astype(np.float32)


def keras_gru():
    """Two stacked GRUs, the last state into a classifier."""
    keras = _keras(24)
    layers = keras.layers
    inputs = keras.Input((8, 6), name="series")
    x = layers.GRU(16, return_sequences=True)(inputs)
    x = layers.GRU(16)(x)
    outputs = layers.Dense(3, name="classes")(x)
    return keras.Model(inputs, outputs), _rng(24).standard_normal((1, 8, 6)).astype(np.float32)


def _encoder_block(keras, x, heads: int = 2, width: int = 16):
    """Pre-norm Transformer block: LayerNorm, self-attention, residual, LayerNorm, exact-GELU MLP, residual."""
    layers = keras.layers
    y = layers.LayerNormalization()(x)
    x = layers.Add()([x, layers.MultiHeadAttention(heads, width // heads)(y, y)])
    y = layers.LayerNormalization()(x)
    y = layers.Dense(width, activation="linear")(layers.Dense(2 * width, activation="gelu")(y))
    return layers.Add()([x, y])


def keras_transformer():
    """Text Transformer encoder: token ids -> embedding + positions -> 2 blocks with exact GELU."""
    keras = _keras(25)
    layers = keras.layers
    tokens = keras.Input((8,), dtype="int32", name="tokens")
    positions = layers.Embedding(8, 16)(keras.ops.arange(8))
    x = layers.Embedding(50, 16)(tokens) + positions
    for _ in range(2):
        x = _encoder_block(keras, x)
    outputs = layers.Dense(4, name="logits")(layers.LayerNormalization()(x))
    return keras.Model(tokens, outputs), _rng(25).integers(0, 50, (1, 8)).astype(np.int32)


def keras_vit():
    """Vision transformer: 4x4 patch conv, a learned class token, one GELU block, head on the token."""
    keras = _keras(26)
    layers = keras.layers
    image = keras.Input((16, 16, 3), name="image")
    patches = layers.Reshape((16, 16))(layers.Conv2D(16, 4, strides=4)(image))
    x = _class_token_layer()(name="cls_token")(patches)
    x = x + layers.Embedding(17, 16)(keras.ops.arange(17))
    x = _encoder_block(keras, x)
    x = layers.LayerNormalization()(x)
    outputs = layers.Dense(5, name="logits")(x[:, 0])
    return keras.Model(image, outputs), _rng(26).random((1, 16, 16, 3), dtype=np.float32)


def keras_recommender():
    """Recommender: user and item ids into embeddings (dot product) plus a dense-feature tower."""
    keras = _keras(27)
    layers = keras.layers
    user = keras.Input((1,), dtype="int32", name="user")
    item = keras.Input((1,), dtype="int32", name="item")
    features = keras.Input((4,), name="features")
    u = layers.Flatten()(layers.Embedding(30, 8)(user))
    i = layers.Flatten()(layers.Embedding(40, 8)(item))
    x = layers.Concatenate()([u, i, layers.Dot(axes=1)([u, i]), features])
    outputs = layers.Dense(1, activation="sigmoid", name="score")(layers.Dense(16, activation="relu")(x))
    rng = _rng(27)
    example = {
        "user": rng.integers(0, 30, (1, 1)).astype(np.int32),
        "item": rng.integers(0, 40, (1, 1)).astype(np.int32),
        "features": rng.standard_normal((1, 4)).astype(np.float32),
    }
    return keras.Model([user, item, features], outputs), example


def keras_multi_output():
    """Several outputs of different ranks from one image: logits, a segmentation map, an embedding."""
    keras = _keras(28)
    layers = keras.layers
    image = keras.Input((12, 12, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(image)
    logits = layers.Dense(4, name="logits")(layers.GlobalAveragePooling2D()(x))
    mask = layers.Conv2D(3, 1, name="mask")(x)
    embedding = layers.Dense(6, name="embedding")(layers.Flatten()(layers.MaxPooling2D(4)(x)))
    return keras.Model(image, [logits, mask, embedding]), _rng(28).random((1, 12, 12, 3), dtype=np.float32)


def keras_audio():
    """Audio classifier: Conv1D front end over mel frames, a GRU, a dense head."""
    keras = _keras(29)
    layers = keras.layers
    mels = keras.Input((None, 10), name="mels")  # any number of frames
    x = layers.Conv1D(16, 3, padding="same", activation="relu")(mels)
    x = layers.GRU(16)(x)
    outputs = layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(mels, outputs), _rng(29).standard_normal((1, 8, 10)).astype(np.float32)


def keras_wide_deep():
    """Wide-and-deep: int category ids into an embedding (deep), float features both wide and deep."""
    keras = _keras(30)
    layers = keras.layers
    category = keras.Input((3,), dtype="int32", name="category")
    numeric = keras.Input((5,), name="numeric")
    deep = layers.Flatten()(layers.Embedding(20, 4)(category))
    deep = layers.Dense(16, activation="relu")(layers.Concatenate()([deep, numeric]))
    deep = layers.Dense(8, activation="relu")(deep)
    wide = layers.Dense(1)(numeric)
    outputs = layers.Activation("sigmoid", name="ctr")(layers.Add()([wide, layers.Dense(1)(deep)]))
    rng = _rng(30)
    example = {
        "category": rng.integers(0, 20, (1, 3)).astype(np.int32),
        "numeric": rng.standard_normal((1, 5)).astype(np.float32),
    }
    return keras.Model([category, numeric], outputs), example


@functools.cache
def _class_token_layer():
    """The custom layer class, defined on first use so importing this module needs no Keras."""
    import keras

    @keras.saving.register_keras_serializable(package="ondevice_tests")
    class ClassToken(keras.layers.Layer):
        """Prepends one learned token to a (batch, tokens, width) sequence."""

        def build(self, input_shape):
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="random_normal")

        def call(self, x):
            ops = keras.ops
            token = ops.broadcast_to(self.token, (ops.shape(x)[0], 1, ops.shape(x)[-1]))
            return ops.concatenate([token, x], axis=1)

    return ClassToken


TORCH = {
    "cnn": torch_cnn,
    "unet": torch_unet,
    "generator": torch_generator,
    "lstm": torch_lstm,
    "gru": torch_gru,
    "transformer": torch_transformer,
    "vit": torch_vit,
    "recommender": torch_recommender,
    "multi_output": torch_multi_output,
}
KERAS = {
    "cnn": keras_cnn,
    "unet": keras_unet,
    "generator": keras_generator,
    "lstm": keras_lstm,
    "gru": keras_gru,
    "transformer": keras_transformer,
    "vit": keras_vit,
    "recommender": keras_recommender,
    "multi_output": keras_multi_output,
    "audio": keras_audio,
    "wide_deep": keras_wide_deep,
}
FAMILIES = {**{f"torch_{k}": v for k, v in TORCH.items()}, **{f"keras_{k}": v for k, v in KERAS.items()}}


def torch_spectrum():
    """Not a family: a spectrum model (|rfft| -> linear) whose FFT no TFLite strategy converts."""
    torch, nn = _torch()

    class Spectrum(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(5, 3)

        def forward(self, signal):
            return self.head(torch.fft.rfft(signal).abs())

    torch.manual_seed(19)
    return Spectrum().eval(), torch.randn(1, 8)
