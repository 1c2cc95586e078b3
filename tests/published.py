"""Published architectures built from their libraries, nothing downloaded: every ``keras.applications``
model and the main Hugging Face ``transformers`` families, with random weights.

Each factory returns ``(model, example_inputs)`` like those of tests/families.py and is usable from the
CLI (``ondevice check tests/published.py:keras_MobileNetV3Small``). ``PUBLISHED`` maps ``keras_<Name>`` and
``torch_<family>`` to the factories, smallest models first (the order scripts/coverage runs them in).

Keras models take the smallest square input each allows, ten classes and raw logits; their batch-norm
statistics are set from a random batch so that outputs depend on the input (the initial moving mean 0
and variance 1 let activations grow through a deep random network until the logits saturate). The
Hugging Face models use tiny configs (hidden 32, two layers, a 128-token vocabulary) and keep their own
forward signature and ModelOutput return.
"""

from __future__ import annotations

import functools

import numpy as np

# Inputs below these sizes are refused by the architecture (default: 32).
_MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
# Parameters in millions at ImageNet's head: the run order, smallest first; a name missing here runs last.
_SIZE_M = {
    "MobileNetV3Small": 2.5, "MobileNetV2": 3.5, "MobileNet": 4.3, "NASNetMobile": 5.3, "EfficientNetB0": 5.3,
    "MobileNetV3Large": 5.5, "EfficientNetV2B0": 7.2, "EfficientNetB1": 7.9, "DenseNet121": 8.1,
    "EfficientNetV2B1": 8.2, "EfficientNetB2": 9.2, "EfficientNetV2B2": 10.2, "EfficientNetB3": 12.3,
    "DenseNet169": 14.3, "EfficientNetV2B3": 14.5, "EfficientNetB4": 19.5, "DenseNet201": 20.2,
    "EfficientNetV2S": 21.6, "Xception": 22.9, "InceptionV3": 23.9, "ResNet50": 25.6, "ResNet50V2": 25.6,
    "ConvNeXtTiny": 28.6, "EfficientNetB5": 30.6, "EfficientNetB6": 43.3, "ResNet101": 44.7,
    "ResNet101V2": 44.7, "ConvNeXtSmall": 50.2, "EfficientNetV2M": 54.4, "InceptionResNetV2": 55.9,
    "ResNet152": 60.4, "ResNet152V2": 60.4, "EfficientNetB7": 66.7, "ConvNeXtBase": 88.6, "NASNetLarge": 88.9,
    "EfficientNetV2L": 119.0, "VGG16": 138.4, "VGG19": 143.7, "ConvNeXtLarge": 197.8, "ConvNeXtXLarge": 350.0,
}  # fmt: skip
_SEQ = 16
_STATS_BATCH = 128
_VOCAB = 128


def keras_application_names() -> list[str]:
    """Every architecture ``keras.applications`` exports, smallest first."""
    import keras

    names = [n for n in dir(keras.applications) if n[:1].isupper() and callable(getattr(keras.applications, n))]
    return sorted(names, key=lambda n: (_SIZE_M.get(n, float("inf")), n))


def keras_application(name: str):
    """``keras.applications.<name>`` at its smallest input, ten logits, batch norm set from a random batch."""
    import keras

    keras.utils.set_random_seed(0)
    size = _MIN_SIZE.get(name, 32)
    build = getattr(keras.applications, name)
    model = build(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    # Pixels in [0, 255]: the range the models' own preprocessing layers (where they have them) expect.
    # 128 of them: at these sizes the deepest layers are 1x1, so each channel's statistics come from one
    # value per image. From 8, other inputs fell outside them and the network amplified the difference:
    # EfficientNetB3's logits reached 1e4 and fp32 rounding alone broke parity; from 128 a 1e-3 change
    # of the input moves its logits by 0.2% of their spread across inputs (about MobileNetV2's figure).
    images = np.random.default_rng(0).uniform(0, 255, (_STATS_BATCH, size, size, 3)).astype(np.float32)
    set_batch_norm_statistics(model, images)
    return model, images[:1]


def set_batch_norm_statistics(model, batch: np.ndarray) -> None:
    """Moving mean and variance of every BatchNormalization from ``batch``, dropout off meanwhile.

    One training-mode pass with momentum 0 replaces each layer's moving statistics by its batch
    statistics; as each layer normalises with those same statistics in that pass, every later layer
    sees what it will see in inference on this batch, so one pass sets them all.
    """
    import keras

    saved = []
    for layer in _layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            saved.append((layer, "momentum", layer.momentum))
            layer.momentum = 0.0
        elif isinstance(layer, keras.layers.Dropout):
            saved.append((layer, "rate", layer.rate))
            layer.rate = 0.0
    model(batch, training=True)
    for layer, attribute, value in saved:
        setattr(layer, attribute, value)


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


# ---- Hugging Face transformers ---------------------------------------------------------------


def _text_inputs(*names: str, position_offset: int = 0) -> dict:
    """Token ids over the vocabulary, a mask with two padded positions, segment and position ids."""
    import torch

    rng = np.random.default_rng(0)
    ids = rng.integers(3, _VOCAB, (1, _SEQ))
    mask = np.ones((1, _SEQ), dtype=np.int64)
    mask[:, -2:] = 0
    values = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": (np.arange(_SEQ)[None] >= _SEQ // 2).astype(np.int64),
        "position_ids": np.arange(_SEQ)[None] + position_offset,
    }
    return {n: torch.from_numpy(values[n].astype(np.int64)) for n in names}


def _image(size: int = 32):
    import torch

    return torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32))


def torch_bert():
    """BertModel: ids, mask, segments and positions; last_hidden_state and pooler_output."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.BertConfig(
        vocab_size=_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64,
    )  # fmt: skip
    return hf.BertModel(config).eval(), _text_inputs("input_ids", "attention_mask", "token_type_ids", "position_ids")


def torch_distilbert():
    """DistilBertModel: ids and mask (its position_ids come after inputs_embeds, so none here)."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.DistilBertConfig(
        vocab_size=_VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    return hf.DistilBertModel(config).eval(), _text_inputs("input_ids", "attention_mask")


def torch_roberta():
    """RobertaModel: positions start after the padding index (2), as RoBERTa numbers them."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.RobertaConfig(
        vocab_size=_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=_SEQ + 2, type_vocab_size=1,
    )  # fmt: skip
    inputs = _text_inputs("input_ids", "attention_mask", position_offset=2)
    inputs["token_type_ids"] = inputs["attention_mask"] * 0
    inputs["position_ids"] = _text_inputs("position_ids", position_offset=2)["position_ids"]
    return hf.RobertaModel(config).eval(), inputs


def torch_gpt2():
    """GPT2Model (causal mask), no cache; called by keyword through ``ByKeyword`` (see there)."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.GPT2Config(
        vocab_size=_VOCAB,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        use_cache=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    inputs = _text_inputs("input_ids", "attention_mask", "position_ids")
    return by_keyword(hf.GPT2Model(config).eval(), list(inputs)), inputs


def torch_t5_encoder():
    """T5EncoderModel: relative position buckets instead of position ids."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.T5Config(vocab_size=_VOCAB, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
    return hf.T5EncoderModel(config).eval(), _text_inputs("input_ids", "attention_mask")


def torch_vit():
    """ViTModel on 32x32 images in 8x8 patches: last_hidden_state and pooler_output."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return hf.ViTModel(config).eval(), {"pixel_values": _image()}


def torch_whisper_encoder():
    """Whisper's encoder: two convolutions over 16 mel bins x 32 frames, then attention.

    At the default init_std (0.02) the sinusoidal positions drown the input: the output moved 0.05 across
    random inputs against a range of 2.9, too little for int8 parity to judge; at 0.2 it moves 2.4.
    """
    import torch
    import transformers as hf
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    config = hf.WhisperConfig(
        vocab_size=_VOCAB, num_mel_bins=16, d_model=32, encoder_layers=2, encoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
        max_source_positions=16, max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1, init_std=0.2,
    )  # fmt: skip
    features = np.random.default_rng(0).standard_normal((1, 16, 32)).astype(np.float32)
    return WhisperEncoder(config).eval(), {"input_features": torch.from_numpy(features)}


def torch_wav2vec2():
    """Wav2Vec2Model: a convolutional feature encoder over 400 samples of audio, then attention."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.Wav2Vec2Config(
        vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, mask_time_prob=0.0,
    )  # fmt: skip
    audio = np.random.default_rng(0).standard_normal((1, 400)).astype(np.float32)
    return hf.Wav2Vec2Model(config).eval(), {"input_values": torch.from_numpy(audio)}


def torch_clip_text():
    """CLIPTextModel: causal text tower pooled at the largest token id (what eos_token_id 2 selects)."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.CLIPTextConfig(
        vocab_size=_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=_SEQ, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return hf.CLIPTextModel(config).eval(), _text_inputs("input_ids", "attention_mask", "position_ids")


def torch_clip_vision():
    """CLIPVisionModel on 32x32 images in 8x8 patches."""
    import torch
    import transformers as hf

    torch.manual_seed(0)
    config = hf.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    return hf.CLIPVisionModel(config).eval(), {"pixel_values": _image()}


def by_keyword(model, names: list[str]):
    """``model`` called with its inputs by keyword, for a forward whose parameter order differs.

    ondevice calls a torch model with its inputs positionally in the example's order; GPT2Model's
    second parameter is its cache, not the attention mask. The module returns the model's own output.
    """
    import torch

    class ByKeyword(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args, strict=True)))

    return ByKeyword().eval()


HF = {
    "torch_clip_vision": torch_clip_vision,
    "torch_vit": torch_vit,
    "torch_whisper_encoder": torch_whisper_encoder,
    "torch_wav2vec2": torch_wav2vec2,
    "torch_distilbert": torch_distilbert,
    "torch_clip_text": torch_clip_text,
    "torch_t5_encoder": torch_t5_encoder,
    "torch_bert": torch_bert,
    "torch_roberta": torch_roberta,
    "torch_gpt2": torch_gpt2,
}


def __getattr__(name: str):
    # ``tests/published.py:keras_<Name>`` on the command line: the Keras factories are made on demand.
    if name.startswith("keras_"):
        return functools.partial(keras_application, name.removeprefix("keras_"))
    raise AttributeError(name)


def published() -> dict:
    """Every published model's factory by name: the Hugging Face ones (seconds each), then Keras's by size."""
    keras_ = {f"keras_{n}": functools.partial(keras_application, n) for n in keras_application_names()}
    return {**HF, **keras_}
