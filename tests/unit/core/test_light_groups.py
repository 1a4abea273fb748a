"""Groups of good boards: the light feature, the groups on disk, one per-position level per group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.core.atlas import Atlas
from inspector.core.groups import LightGroups, fit_groups, light_feature
from inspector.errors import BundleError


def board(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(20, 200, (64, 64, 3)).astype(np.uint8)


def test_the_light_feature_reads_white_balance_and_ignores_an_offset() -> None:
    reference = board()
    same = light_feature(reference, reference)
    assert np.allclose(same, 0.0, atol=1e-3)
    offset = np.clip(reference.astype(np.int16) + 12, 0, 255).astype(np.uint8)  # black level / stray light
    assert np.abs(light_feature(offset, reference)).max() < 0.02
    cast = np.clip(reference.astype(np.float32) * np.array([0.84, 0.98, 1.3]), 0, 255).astype(np.uint8)
    blue_green, red_green, _ = light_feature(cast, reference)
    assert blue_green == pytest.approx(np.log(0.84 / 0.98), abs=0.03)
    assert red_green == pytest.approx(np.log(1.3 / 0.98), abs=0.06)  # red clips a little at 255
    grey = light_feature(reference[..., 1], reference[..., 1])
    assert grey.shape == (1,)


def test_groups_round_trip_and_refuse_a_board_far_from_every_group(tmp_path: Path) -> None:
    features = np.array([[0.0, 0.0, 0.0]] * 6 + [[-0.15, 0.28, 0.0]] * 6, np.float32)
    features += np.random.default_rng(1).normal(0, 0.01, features.shape).astype(np.float32)
    labels = np.array([0] * 6 + [1] * 6)
    boards = [board(i) for i in range(12)]
    groups = fit_groups(features, labels, boards)
    assert groups.count == 2 and groups.counts == [6, 6]
    assert groups.group_of(np.array([-0.15, 0.28, 0.0], np.float32))[0] == 1
    assert groups.group_of(np.array([0.6, -0.6, 0.0], np.float32))[0] == -1
    path = tmp_path / "groups.npz"
    groups.save(path)
    loaded = LightGroups.load(path)
    assert np.array_equal(loaded.references, groups.references) and loaded.counts == [6, 6]
    path.write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="unreadable groups"):
        LightGroups.load(path)


def test_an_atlas_of_groups_judges_each_board_by_its_own_group(tmp_path: Path) -> None:
    quiet = Atlas(level=np.full((8, 8), 1.0, np.float32), floor=1.0, quantile=0.9, dilate_px=0, boards=10)
    busy = Atlas(level=np.full((8, 8), 9.0, np.float32), floor=1.0, quantile=0.9, dilate_px=0, boards=10)
    both = Atlas.of_groups([quiet, busy])
    assert both.groups == 2
    error = np.full((8, 8), 10.0, np.float32)
    assert both.judge(error, 0)[0, 0] == pytest.approx(5.0)
    assert both.judge(error, 1)[0, 0] == pytest.approx(1.0)
    path = tmp_path / "atlas.npz"
    both.save(path)
    loaded = Atlas.load(path)
    assert loaded.groups == 2 and loaded.judge(error, 1)[0, 0] == pytest.approx(1.0)
    assert Atlas.of_groups([quiet]) is quiet and quiet.groups == 1
