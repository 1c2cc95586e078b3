"""Input specs and sample data."""

from __future__ import annotations

import numpy as np
import pytest

from ondevice.core.errors import BadInputError
from ondevice.core.specs import TensorSpec, make_samples, parse_input_spec, spec_from_array
from ondevice.layout import match_io


def test_parse_input_spec():
    assert parse_input_spec("x:1x3x224x224") == TensorSpec("x", (1, 3, 224, 224), "float32")
    assert parse_input_spec("ids:2x16:int64").dtype == "int64"


@pytest.mark.parametrize("text", ["x", "x:1x0x3", "x:1xfoo", "x:1x3:complex7", ":1x3"])
def test_bad_input_spec(text):
    with pytest.raises(BadInputError):
        parse_input_spec(text)


def test_integer_samples_stay_in_example_range():
    spec = spec_from_array("ids", np.array([[3, 7, 5]], dtype=np.int64))
    samples = make_samples([spec], 50, seed=0)
    values = np.concatenate([s["ids"].ravel() for s in samples[1:]])
    assert values.min() >= 3 and values.max() <= 7
    assert len(set(values.tolist())) > 1


def test_float_samples_follow_example_range_and_seed():
    spec = spec_from_array("img", np.random.default_rng(0).random((1, 3, 8, 8)).astype(np.float32))
    a = make_samples([spec], 4, seed=5)
    b = make_samples([spec], 4, seed=5)
    assert all(np.array_equal(x["img"], y["img"]) for x, y in zip(a, b, strict=True))
    assert min(s["img"].min() for s in a) >= 0 and max(s["img"].max() for s in a) <= 1


def test_match_io_by_name_order_and_layout():
    src = [TensorSpec("a", (1, 3, 8, 8)), TensorSpec("b", (1, 4))]
    art = [TensorSpec("serving_default_b:0", (1, 4)), TensorSpec("a", (1, 8, 8, 3))]
    maps = match_io(src, art, channels_last=True, kind="input")
    assert [(m.source, m.artifact, m.perm) for m in maps] == [
        ("a", "a", (0, 2, 3, 1)),
        ("b", "serving_default_b:0", None),
    ]
    renamed = match_io(src, [TensorSpec("p", (1, 3, 8, 8)), TensorSpec("q", (1, 4))], False, "input")
    assert [m.matched_by for m in renamed] == ["order", "order"]
    with pytest.raises(Exception, match="shape"):
        match_io(src, [TensorSpec("a", (1, 5)), TensorSpec("b", (1, 4))], False, "input")


def test_padding_masks_and_segment_ids_keep_their_steps():
    """A right-padded mask samples as right-padded masks (never a first position masked: a causal model's
    first row would attend to nothing); zeros-then-ones rows (left padding, segment ids) keep that order."""
    mask = np.ones((2, 16), np.int64)
    mask[:, -3:] = 0
    segments = np.zeros((1, 9), np.int32)
    segments[:, 5:] = 1
    specs = [spec_from_array("attention_mask", mask), spec_from_array("token_type_ids", segments)]
    assert [s.step for s in specs] == ["down", "up"]
    samples = make_samples(specs, 40, seed=3)
    lengths = set()
    for sample in samples:
        rows, segs = sample["attention_mask"], sample["token_type_ids"]
        assert rows.dtype == np.int64 and rows.shape == (2, 16) and segs.dtype == np.int32
        assert (rows[:, 0] == 1).all() and (np.diff(rows, axis=-1) <= 0).all()
        assert (segs[:, -1] == 1).all() and (np.diff(segs, axis=-1) >= 0).all()
        lengths.update(rows.sum(axis=-1).tolist())
    assert len(lengths) > 8  # the step moves: lengths from 1 to 16 appear
    # Elementwise 0/1 values, constant rows and token ids keep the plain range sampling.
    assert spec_from_array("x", np.array([[1, 0, 1, 0]])).step is None
    assert spec_from_array("x", np.ones((1, 4), np.int64)).step is None
    assert spec_from_array("ids", np.array([[3, 1, 0]])).step is None
