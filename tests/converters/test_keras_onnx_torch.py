"""keras-onnx-torch: the ConvNeXt pattern (depthwise and grouped convolutions, exact GELU) reaches ONNX
through Keras's torch backend where both TF-graph strategies fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ondevice
from ondevice.converters.registry import strategies_for


def _convnext_block():
    """Depthwise 3x3 -> LayerNorm -> grouped 1x1 -> exact GELU -> residual, pooled to four logits."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((12, 12, 8), name="image")
    x = keras.layers.DepthwiseConv2D(3, padding="same")(image)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Conv2D(16, 1, groups=4)(x)
    x = keras.layers.Activation("gelu")(x)  # exact (erf) GELU: TFLite's GELU builtin
    x = keras.layers.Conv2D(8, 1)(x)
    x = keras.layers.Add()([image, x])
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(image, logits)
    example = np.random.default_rng(0).standard_normal((1, 12, 12, 8)).astype(np.float32)
    return model, example


@pytest.fixture(scope="module")
def convnext_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("convnext_onnx")
    model, example = _convnext_block()
    return ondevice.check(model, example, targets=["onnx"], out_dir=out, runs=5), out


def test_strategy_is_registered_after_the_tf_graph_ones():
    names = [s.name for s in strategies_for("keras", "onnx")]
    assert names[-1] == "keras-onnx-torch"
    assert names.index("keras-onnx-torch") > names.index("keras-onnx-tf2onnx")


def test_torch_backend_passes_where_tf2onnx_and_tflite_fail(convnext_check):
    report, out = convnext_check
    result = report.targets[0]
    assert result.status == "passed", result.error
    assert result.strategy == "keras-onnx-torch"
    assert result.parity["samples"] == 8
    for output in result.parity["outputs"]:
        assert output["name"] == "logits"
        assert output["max_abs_err"] < 1e-5, output
        assert output["cosine"] > 0.999999
    manifest = json.loads((out / "manifest.json").read_text())
    attempts = {a["strategy"]: a for a in manifest["artifacts"][0]["attempts"]}
    # Today's failures of the TF-graph strategies on this block, by what they could not read.
    assert attempts["keras-onnx-tf2onnx"]["status"] == "rejected"
    assert "not attempted: 1 grouped convolution(s)" in attempts["keras-onnx-tf2onnx"]["reason"]
    assert attempts["keras-onnx-tflite"]["status"] == "rejected"
    assert "not attempted: the TFLite flatbuffer holds TFL_GELU," in attempts["keras-onnx-tflite"]["reason"]
    assert attempts["keras-onnx-torch"]["status"] == "accepted"


def test_tf2onnx_really_leaves_the_grouped_convolution_unconverted(tmp_path):
    """Why keras-onnx-tf2onnx does not try a model with grouped convolutions: run tf2onnx anyway and
    the graph keeps Keras' XLA-compiled convolution as a call node the ONNX checker refuses. If a
    tf2onnx release learns to inline it, this fails and the shortcut should go."""
    from ondevice.converters._tf2onnx import export_onnx
    from ondevice.converters.keras_onnx import grouped_convolutions
    from ondevice.converters.registry import ConversionJob, StrategyFailed
    from ondevice.reference import fill_source_outputs
    from ondevice.sources import from_object

    model, example = _convnext_block()
    assert len(grouped_convolutions(model)) == 1  # DepthwiseConv2D has no groups; the grouped 1x1 does
    source = from_object(model, example)
    fill_source_outputs(source)
    with pytest.raises(StrategyFailed, match=r"StatefulPartitionedCall.*_conv_xla"):
        export_onnx(ConversionJob(source, "onnx", tmp_path), tmp_path / "model.onnx")


def test_tf2onnx_really_cannot_read_the_tflite_gelu(tmp_path):
    """Why keras-onnx-tflite stops before tf2onnx.from_tflite on this block: the flatbuffer's op list
    names TFL_GELU, and run anyway, tf2onnx leaves it in a graph the ONNX checker refuses. If a tf2onnx
    release learns the op, both assertions fail and the shortcut goes with them."""
    import onnx
    import tf2onnx.convert

    from ondevice.converters._keras import convert_to_tflite
    from ondevice.converters.keras_onnx import unreadable_tflite_ops
    from ondevice.converters.registry import ConversionJob
    from ondevice.reference import fill_source_outputs
    from ondevice.sources import from_object

    model, example = _convnext_block()
    source = from_object(model, example)
    fill_source_outputs(source)
    tflite, _ = convert_to_tflite(ConversionJob(source, "onnx", tmp_path), tmp_path / "block.tflite")
    assert unreadable_tflite_ops(tflite) == ["TFL_GELU"]
    proto, _ = tf2onnx.convert.from_tflite(str(tflite))
    with pytest.raises(onnx.checker.ValidationError, match="TFL_GELU"):
        onnx.checker.check_model(proto)


def test_onnx_file_keeps_the_keras_layout_and_names(convnext_check):
    import onnx

    _, out = convnext_check
    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["logits"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 12, 12, 8]  # channels last
