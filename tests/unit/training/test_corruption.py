"""Denoising corruptions damage a copy within the crop's own range and leave some crops clean."""

from __future__ import annotations

import numpy as np

from training.corruption import corrupt


def two_conductors() -> np.ndarray:
    """Two bright vertical bars (conductors) on a dark board, 10 px apart."""
    crop = np.zeros((1, 48, 48), np.float32)
    crop[:, :, 8:19] = 1.0
    crop[:, :, 29:40] = 1.0
    return crop


def test_corrupt_damages_a_copy_within_the_crops_range() -> None:
    crop = two_conductors() * 0.8 + 0.1
    rng = np.random.default_rng(7)
    changed = 0
    for _ in range(40):
        out = corrupt(crop, rng)
        assert out.shape == crop.shape and out.dtype == np.float32
        assert out.min() >= 0.1 - 1e-6 and out.max() <= 0.9 + 1e-6
        changed += int(not np.array_equal(out, crop))
    assert np.array_equal(crop, two_conductors() * 0.8 + 0.1)  # the clean target is never touched
    assert 15 < changed < 40  # most crops corrupted, some left clean to keep the identity honest
