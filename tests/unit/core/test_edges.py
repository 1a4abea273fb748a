"""The edge allowance: fitted on good boards' maps, divided out near the border, part of calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from inspector.core.calibration import calibrate
from inspector.core.edges import REACH_PX, EdgeAllowance, fit_edge_allowance
from inspector.core.interface import Analysis
from inspector.core.scoring import ScoringSpec

SIZE = 160


def _good_map(rng: np.random.Generator, border: float = 3.0) -> np.ndarray:
    """A good board's smoothed error: low noise inside, `border` times higher within 8 px of the edge
    (what a convolutional network does where it lacks context)."""
    smoothed = rng.gamma(2.0, 0.05, (SIZE, SIZE)).astype(np.float32)
    band = np.zeros((SIZE, SIZE), bool)
    band[:8], band[-8:], band[:, :8], band[:, -8:] = True, True, True, True
    smoothed[band] *= border
    return smoothed


class _Maps:
    """The calibration's view of an engine, over prepared maps (the 'images' are indices)."""

    scoring = ScoringSpec()
    judged_per_position = False

    def __init__(self, maps: Sequence[np.ndarray]) -> None:
        self.maps = list(maps)

    def analyse(self, images: Sequence[np.ndarray]) -> list[Analysis]:
        return [Analysis((SIZE, SIZE), self.maps[int(i)], np.zeros((1, SIZE, SIZE), np.float32), {}) for i in images]

    def anomaly_map(self, analysis: Analysis, pixel_scale: float | None = None,
                    edges: EdgeAllowance | None = None) -> np.ndarray:
        smoothed = analysis.smoothed if edges is None else edges.apply(analysis.smoothed)
        return smoothed / (pixel_scale or 1.0)


def test_fit_finds_the_border_band_and_leaves_the_interior_alone() -> None:
    rng = np.random.default_rng(0)
    edges = fit_edge_allowance([_good_map(rng) for _ in range(20)])
    assert edges is not None and len(edges.factors) == REACH_PX
    assert all(2.0 < factor < 4.5 for factor in edges.factors[:8])  # about the band's 3x
    assert all(factor < 1.3 for factor in edges.factors[12:])
    weights = edges.weights((SIZE, SIZE))
    assert weights[0, 80] == pytest.approx(1 / edges.factors[0]) and weights[80, 80] == 1.0
    flat = np.ones((SIZE, SIZE), np.float32)
    assert edges.apply(flat)[3, 80] == pytest.approx(1 / edges.factors[3])


def test_a_few_hot_interior_spots_do_not_hide_a_border_band_on_every_board() -> None:
    """What a second DeepPCB training run showed: every board a little hotter near the border, and
    a few boards with one bright spot inside. The allowance is fitted on the band, not on the spots."""
    rng = np.random.default_rng(2)
    maps = [_good_map(rng) for _ in range(40)]
    for index in range(0, 40, 10):  # 4 boards, one 9x9 spot each, far above anything at the border
        maps[index][70:79, 70:79] = 20.0
    edges = fit_edge_allowance(maps)
    assert edges is not None and edges.quantile == pytest.approx(0.999)
    assert all(factor > 2.0 for factor in edges.factors[:8])
    # The previous, more extreme quantile rested on those spots and found no allowance at all.
    extreme = fit_edge_allowance(maps, quantile=0.9999)
    assert extreme is not None and max(extreme.factors) == 1.0


def test_no_allowance_without_an_interior_or_without_error_in_it() -> None:
    assert fit_edge_allowance([np.ones((2 * REACH_PX - 1, 200), np.float32)]) is None
    assert fit_edge_allowance([np.zeros((SIZE, SIZE), np.float32)]) is None


def test_records_round_trip_and_bad_factors_are_refused() -> None:
    edges = EdgeAllowance((2.5, 1.5, 1.0))
    assert EdgeAllowance.from_record(edges.to_record()) == edges
    assert EdgeAllowance.from_record({"factors": [2.0]}) == EdgeAllowance((2.0,), 0.9999)  # records of before
    assert EdgeAllowance.from_record(None) is None
    with pytest.raises(ValueError):
        EdgeAllowance.from_record({"factors": [0.5, 1.0]})
    with pytest.raises(ValueError):
        EdgeAllowance.from_record({"factors": [float("nan")]})


def test_calibration_sets_the_region_line_from_the_interior_once_the_border_is_allowed_for() -> None:
    """Good boards' border spots set the line without the allowance; with it, a defect in the middle
    of the board as high as those spots shows, and a border spot like the good boards' does not."""
    rng = np.random.default_rng(1)
    good = [_good_map(rng) for _ in range(40)]
    engine = _Maps(good)
    indices = [np.array(i) for i in range(len(good))]
    plain = calibrate(engine, indices, target_false_alarm_rate=0.05, region_false_alarm_rate=0.5,
                      edge_allowance=False)
    allowed = calibrate(engine, indices, target_false_alarm_rate=0.05, region_false_alarm_rate=0.5,
                        pixel_scale=plain["normaliser"]["pixel_scale"])
    assert "edge_allowance" not in plain and "edge_allowance" in allowed
    assert allowed["pixel_threshold"] < 0.6 * plain["pixel_threshold"]
    edges = EdgeAllowance.from_record(allowed["edge_allowance"])
    assert edges is not None
    scale = plain["normaliser"]["pixel_scale"]
    board = _good_map(rng, border=1.0)
    spot = 0.9 * plain["pixel_threshold"] * scale  # under the old line: missed without the allowance
    board[76:84, 76:84] = spot
    board[2:8, 76:84] = spot
    judged = edges.apply(board) / scale
    assert judged[80, 80] >= allowed["pixel_threshold"] > judged[4, 80]


def test_an_engine_judged_per_position_gets_no_allowance() -> None:
    rng = np.random.default_rng(2)
    engine = _Maps([_good_map(rng) for _ in range(10)])
    engine.judged_per_position = True
    figures = calibrate(engine, [np.array(i) for i in range(10)], target_false_alarm_rate=0.1)
    assert "edge_allowance" not in figures
