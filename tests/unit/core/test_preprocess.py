from __future__ import annotations

import numpy as np
import pytest

from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess, working_size
from inspector.errors import ConfigError


def test_gray_and_colour_shapes_and_range() -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    gray_in = preprocess(colour, PreprocessSpec(channels=1))
    colour_in = preprocess(colour, PreprocessSpec(channels=3))
    assert gray_in.shape == (1, 40, 60) and colour_in.shape == (3, 40, 60)
    assert gray_in.dtype == np.float32 and 0.0 <= gray_in.min() and gray_in.max() <= 1.0
    # channel order is preserved (BGR in, BGR planes out)
    assert np.allclose(colour_in[2], colour[:, :, 2] / 255.0)


def test_scale_and_normalisation() -> None:
    image = np.full((64, 32), 255, np.uint8)
    spec = PreprocessSpec(channels=1, scale=0.5, mean=0.5, std=0.25)
    out = preprocess(image, spec)
    assert out.shape == (1, 32, 16) and working_size(64, 32, spec) == (32, 16)
    assert np.allclose(out, 2.0)


def test_spec_round_trips_through_json_and_refuses_nonsense() -> None:
    spec = PreprocessSpec(channels=3, scale=0.75, tile_size=256, tile_overlap=32)
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ConfigError):
        PreprocessSpec(channels=2)
    with pytest.raises(ConfigError):
        PreprocessSpec.from_json('{"channels": 1, "bogus": 3}')


def test_pad_to_multiple_keeps_original_size() -> None:
    tensor = np.arange(2 * 1 * 10 * 13, dtype=np.float32).reshape(2, 1, 10, 13)
    padded, size = pad_to_multiple(tensor, 8)
    assert padded.shape == (2, 1, 16, 16) and size == (10, 13)
    assert np.array_equal(padded[..., :10, :13], tensor)


def test_rejects_non_uint8() -> None:
    with pytest.raises(ConfigError):
        preprocess(np.zeros((8, 8), np.uint16), PreprocessSpec())
