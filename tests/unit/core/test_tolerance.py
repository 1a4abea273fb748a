"""The learned tolerance map: applied by division where widened, exact elsewhere, stored losslessly."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.tolerance import LearnedTolerance, mask_from_bytes, mask_to_bytes
from inspector.errors import InspectorError


def test_the_map_is_divided_where_widened_and_left_alone_elsewhere() -> None:
    factor = np.ones((20, 30), np.float32)
    factor[5:8, 10:14] = 2.5
    tolerance = LearnedTolerance(factor, 3)
    judged = np.full((20, 30), 2.0, np.float32)
    tolerated = tolerance.apply(judged)
    assert np.allclose(tolerated[5:8, 10:14], 0.8) and np.array_equal(tolerated[factor == 1], judged[factor == 1])
    assert int(tolerance.widened.sum()) == 12
    back = LearnedTolerance.from_bytes(tolerance.to_bytes(), 3)
    assert np.array_equal(back.factor, factor) and back.version == 3
    assert LearnedTolerance.stored(None, 4) is None


def test_wrong_maps_are_refused_with_the_reason() -> None:
    with pytest.raises(InspectorError, match="values >= 1"):
        LearnedTolerance(np.full((4, 4), 0.5, np.float32), 1)
    with pytest.raises(InspectorError, match="values >= 1"):
        LearnedTolerance(np.full((4, 4), np.nan, np.float32), 1)
    with pytest.raises(InspectorError, match="taught on another bundle"):
        LearnedTolerance(np.ones((4, 4), np.float32), 2).apply(np.ones((5, 4), np.float32))
    with pytest.raises(InspectorError, match="unreadable"):
        LearnedTolerance.from_bytes(b"not an npz", 5)


def test_protected_places_round_trip() -> None:
    mask = np.zeros((33, 17), bool)
    mask[3:9, 2:5] = True
    assert np.array_equal(mask_from_bytes(mask_to_bytes(mask)), mask)
    with pytest.raises(InspectorError, match="protected"):
        mask_from_bytes(b"junk")
