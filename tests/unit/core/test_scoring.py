"""The scoring pieces that set the operating point: shift tolerance, hysteresis, the review verdict,
and thresholds calibrated from good boards only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.core.calibration import line_for_regions_per_board, threshold_for
from inspector.core.scoring import ScoringSpec, decide_verdict, error_map, find_regions, image_score, regions_at, smooth, top_k
from inspector.errors import ConfigError


def board(seed: int, shift: int = 0) -> np.ndarray:
    """A 1x96x96 float board of bright traces and pads on a dark substrate."""
    image = np.full((96, 96), 0.1, np.float32)
    for y in range(10, 90, 16):
        cv2.line(image, (5 + shift, y), (90 + shift, y), 0.9, 3)
    for x in range(12, 90, 24):
        cv2.rectangle(image, (x + shift - 4, 40), (x + shift + 4, 52), 0.9, -1)
    noise = np.random.default_rng(seed).normal(0, 0.01, image.shape).astype(np.float32)
    return (image + noise)[None]


def test_shift_tolerance_forgives_edges_but_not_defects() -> None:
    clean = board(0)
    shifted = board(1, shift=1)  # the reconstruction drew every edge one pixel off
    defect = board(2, shift=1)
    cv2.circle(defect[0], (30, 70), 4, 0.9, -1)  # a copper splash between traces
    strict, tolerant = ScoringSpec(shift_tolerance=0), ScoringSpec(shift_tolerance=1)
    edge_strict = error_map(shifted, clean, strict).max()
    edge_tolerant = error_map(shifted, clean, tolerant).max()
    assert edge_tolerant < 0.05 * edge_strict  # a one-pixel misregistration is not an error any more
    defect_tolerant = error_map(defect, clean, tolerant)
    assert defect_tolerant[66:75, 26:35].max() > 0.5  # the splash still is
    assert defect_tolerant[:, 60:].max() < 0.05


def test_hysteresis_grows_seeded_regions_only() -> None:
    amap = np.zeros((80, 80), np.float32)
    amap[10:30, 10:30] = 0.6  # a defect's faint extent...
    amap[18:22, 18:22] = 1.5  # ...around its strong core
    amap[50:70, 50:70] = 0.6  # faint texture with no strong core
    plain = find_regions(amap, 1.0, min_area=4)
    grown = find_regions(amap, 1.0, min_area=4, grow_threshold=0.5)
    assert [r.bbox for r in plain] == [(18, 18, 22, 22)]
    assert [r.bbox for r in grown] == [(10, 10, 30, 30)]  # whole extent, and the unseeded texture stays out
    assert grown[0].peak == pytest.approx(1.5) and grown[0].area == 400


def test_min_area_drops_specks() -> None:
    amap = np.zeros((40, 40), np.float32)
    amap[5, 5] = 3.0
    amap[20:26, 20:26] = 2.0
    regions = find_regions(amap, 1.0, min_area=16)
    assert len(regions) == 1 and regions[0].area == 36


def test_a_small_region_far_above_the_line_is_kept_and_a_speck_at_it_is_not() -> None:
    amap = np.zeros((40, 40), np.float32)
    amap[5:8, 5:8] = 1.6  # 9 px, 1.6x the line: a small defect (the sample boards' burn: 14 px at 1.6x)
    amap[30:33, 30:33] = 1.1  # 9 px just over the line: a speck
    assert find_regions(amap, 1.0, min_area=16) == []
    kept = find_regions(amap, 1.0, min_area=16, small_peak=1.5)
    assert [(r.bbox, r.area) for r in kept] == [((5, 5, 8, 8), 9)]
    with pytest.raises(ConfigError, match="small_region_peak"):
        ScoringSpec(small_region_peak=0.5)


def test_fragments_of_one_flaw_are_one_region_and_a_distant_one_stays_apart() -> None:
    amap = np.zeros((80, 80), np.float32)
    amap[10:15, 10:15] = 2.0  # a trace the map draws in two pieces, 6 px apart...
    amap[10:15, 21:26] = 1.5
    amap[60:63, 60:63] = 1.2  # ...two specks too small alone (9 px), 4 px apart
    amap[60:63, 67:70] = 1.2
    amap[10:15, 60:65] = 1.8  # a flaw 34 px from the first
    plain = find_regions(amap, 1.0, min_area=16)
    merged = find_regions(amap, 1.0, min_area=16, merge_px=8)
    assert [r.bbox for r in plain] == [(10, 10, 15, 15), (60, 10, 65, 15), (21, 10, 26, 15)]
    assert [(r.bbox, r.area, r.peak) for r in merged] == [
        ((10, 10, 26, 15), 50, 2.0),  # one box; its area is the map's own pixels, not the gap
        ((60, 10, 65, 15), 25, pytest.approx(1.8)),
        ((60, 60, 70, 63), 18, pytest.approx(1.2)),  # together the specks reach the minimum area
    ]
    assert merged[0].centroid == pytest.approx((17.5, 12.0))
    assert ScoringSpec.from_json('{"error": "l2"}').region_merge_px == 0  # bundles before it: unchanged
    with pytest.raises(ConfigError, match="region_merge_px"):
        ScoringSpec(region_merge_px=-1)


def test_verdicts_fail_review_pass() -> None:
    region = find_regions(np.pad(np.full((5, 5), 2.0, np.float32), 5), 1.0, min_area=1)
    assert decide_verdict(3.0, 2.0, region, review_band=0.0) == "fail"
    assert decide_verdict(1.0, 2.0, region, review_band=0.0) == "review"  # a region under the fail line
    assert decide_verdict(1.0, 2.0, [], review_band=0.0) == "pass"
    assert decide_verdict(1.9, 2.0, [], review_band=0.1) == "review"


def test_thresholds_come_from_good_boards_only() -> None:
    maxima = np.linspace(0.0, 1.0, 101)  # per-board maxima of 101 good boards
    region_line, rule = threshold_for(maxima, 0.2)
    assert np.mean(maxima >= region_line) <= 0.2 and "quantile" in rule
    fail_line, _ = threshold_for(maxima, 0.01)
    assert fail_line > region_line and np.mean(maxima >= fail_line) <= 0.01
    few_line, few_rule = threshold_for(maxima[:20], 0.01)  # 20 boards cannot show a 1% tail
    assert few_line > maxima[:20].max() and "too few" in few_rule


def good_board_maps() -> list[np.ndarray]:
    """Ten good boards' maps: board i shows i // 3 spots (0, 0, 0, 1, 1, 1, 2, 2, 2, 3), spot j of
    peak 2 + j, and one speck under the minimum area at 9 on every board."""
    maps = []
    for index in range(10):
        amap = np.zeros((64, 64), np.float32)
        for spot in range(index // 3):
            amap[4 + 15 * spot:10 + 15 * spot, 4:10] = 2.0 + spot
        amap[60, 60] = 9.0
        maps.append(amap)
    return maps


def test_the_region_line_on_a_count_keeps_the_boards_under_it_and_a_lower_line_would_not() -> None:
    maps, spec = good_board_maps(), ScoringSpec()
    # 12 spots on 10 boards: 1.2 a board at lines up to 2, 0.5 up to 3 (peaks 3 and 4), 0.1 up to 4, then none
    for target, expected_count in ((1.2, 1.2), (0.7, 0.5), (0.5, 0.5), (0.1, 0.1), (0.0, 0.0)):
        line, rule, shown = line_for_regions_per_board(maps, spec, 16, target)
        counts = [len(regions_at(m, line, spec, 16)) for m in maps]
        assert np.mean(counts) == pytest.approx(expected_count) == pytest.approx(shown["regions_per_board"])
        assert f"at most {target:g} regions a board" in rule
        if target < 1.2:  # where the count crosses the target: just below the line it is over it
            assert np.mean([len(regions_at(m, line * 0.999, spec, 16)) for m in maps]) > target
    # the speck's 9 never counts (under the minimum area), so no line has to clear it
    assert line_for_regions_per_board(maps, spec, 16, 0.0)[0] == pytest.approx(4.0)
    with pytest.raises(ConfigError):
        line_for_regions_per_board(maps, spec, 16, -0.1)


def test_smoothing_keeps_scale_and_spec_validation() -> None:
    raw = np.zeros((31, 31), np.float32)
    raw[15, 15] = 1.0
    assert smooth(raw, 0) is raw and smooth(raw, 2.0).sum() == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ConfigError):
        ScoringSpec(shift_tolerance=-1)
    with pytest.raises(ConfigError):
        ScoringSpec(grow_fraction=0.0)


def test_image_score_pre_selection_gives_the_plain_top_k_mean() -> None:
    """The grouped pre-selection must pick exactly the k highest pixels, ties and hot rows included."""
    spec = ScoringSpec()
    rng = np.random.default_rng(0)
    maps = [rng.gamma(1.0, 1.0, (640, 640)).astype(np.float32), np.full((512, 300), 0.5, np.float32),
            np.round(rng.gamma(1.0, 1.0, (333, 517)), 1).astype(np.float32)]
    maps[1][100, :] = 9.0  # one hot row: a few groups hold every high pixel
    maps.append(np.zeros((640, 640), np.float32))
    maps[3][5, 7] = 100.0  # a single hot pixel among zeros
    for anomaly_map in maps:
        flat = anomaly_map.ravel()
        k = top_k(flat.size, spec)
        expected = float(np.sort(flat)[-k:].mean())
        assert image_score(anomaly_map, spec) == pytest.approx(expected, rel=1e-6)
