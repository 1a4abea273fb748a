"""AUPRO and the region figures on hand-made maps and masks whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.quality.metrics import ProSamples, RegionCounts, aupro, aupro_from_samples, pro_curve, region_counts


def row(*values: float) -> np.ndarray:
    return np.array([values], dtype=np.float32)


def test_perfect_map_scores_one() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:5] = 1
    anomaly_map = mask.astype(np.float32) * 5.0
    assert aupro([anomaly_map, np.zeros((8, 8))], [mask, None]) == pytest.approx(1.0)


def test_worked_example_one_third() -> None:
    # 10 defect-free pixels scoring 1.0 .. 0.1 and one 2-pixel defect scoring 0.95 and 0.55.
    # Curve: (0,0) (0.1,0) (0.1,0.5) (0.2,0.5) (0.3,0.5) -> area 0.1 up to FPR 0.3 -> 0.1 / 0.3.
    ok = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    anomaly_map = row(*ok, 0.95, 0.55)
    mask = row(*([0] * 10), 1, 1).astype(np.uint8)
    assert aupro([anomaly_map], [mask]) == pytest.approx(1 / 3)


def test_each_region_counts_once_whatever_its_size() -> None:
    # Region A: 1 pixel at 0.9. Region B: 3 pixels at 0.9, 0.1, 0.1. Defect-free: 26 pixels,
    # 3 of them at 0.5, the rest 0. Curve: (0,0) (0,2/3) (3/26,2/3) (3/26,1) (1,1), since at 0.9
    # PRO = (1 + 1/3) / 2. Weighting pixels instead of regions would give 2/4 there.
    anomaly_map = np.zeros((3, 10), np.float32)
    mask = np.zeros((3, 10), np.uint8)
    anomaly_map[0, 0], mask[0, 0] = 0.9, 1
    anomaly_map[2, 5:8], mask[2, 5:8] = (0.9, 0.1, 0.1), 1
    anomaly_map[1, 0:3] = 0.5
    expected = (2 / 3 * 3 / 26 + (0.3 - 3 / 26)) / 0.3
    assert aupro([anomaly_map], [mask]) == pytest.approx(expected)


def test_tied_scores_and_interpolation_at_the_fpr_limit() -> None:
    # Defect-free 0.8 0.6 0.4 0.2 0.1; a 1-pixel defect tied with them at 0.6.
    # Curve: (0,0) (0.2,0) (0.4,1): the tie is one diagonal step. At FPR 0.3 the curve is at 0.5,
    # so the area is the triangle 0.1 * 0.5 / 2 = 0.025 -> 0.025 / 0.3 = 1/12.
    anomaly_map = row(0.8, 0.6, 0.4, 0.2, 0.1, 0.6)
    mask = row(0, 0, 0, 0, 0, 1).astype(np.uint8)
    fpr, pro = pro_curve(_samples(anomaly_map, mask))
    assert fpr[:3].tolist() == pytest.approx([0.0, 0.2, 0.4]) and pro[:3].tolist() == pytest.approx([0, 0, 1])
    assert aupro([anomaly_map], [mask]) == pytest.approx(1 / 12)


def _samples(anomaly_map: np.ndarray, mask: np.ndarray, stride: int = 1) -> ProSamples:
    samples = ProSamples()
    samples.add(anomaly_map, mask, ok_stride=stride)
    return samples


def _reference_aupro(maps: list[np.ndarray], masks: list[np.ndarray], max_fpr: float = 0.3) -> float:
    """Brute force: every threshold evaluated directly from the definition."""
    import cv2

    thresholds = np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]
    ok = np.concatenate([m[k == 0] for m, k in zip(maps, masks)])
    components = []
    for m, k in zip(maps, masks):
        count, labels = cv2.connectedComponents(k.astype(np.uint8), connectivity=8)
        components += [m[labels == i] for i in range(1, count)]
    fprs, pros = [0.0], [0.0]
    for t in thresholds:
        fprs.append(float((ok >= t).mean()))
        pros.append(float(np.mean([(c >= t).mean() for c in components])))
    fprs, pros = np.array(fprs), np.array(pros)
    grid = np.linspace(0, max_fpr, 30001)
    # Step-aware interpolation: for equal FPRs the curve is vertical, np.interp takes the last point.
    return float(np.trapezoid(np.interp(grid, fprs, pros), grid) / max_fpr)


def test_matches_brute_force_definition_on_random_maps() -> None:
    rng = np.random.default_rng(5)
    maps, masks = [], []
    for _ in range(3):
        mask = np.zeros((24, 24), np.uint8)
        for _ in range(2):
            y, x = rng.integers(0, 20, 2)
            mask[y:y + rng.integers(1, 5), x:x + rng.integers(1, 5)] = 1
        maps.append(np.round(rng.random((24, 24)) + mask * rng.random(), 2).astype(np.float32))
        masks.append(mask)
    assert aupro(maps, masks) == pytest.approx(_reference_aupro(maps, masks), abs=2e-3)


def test_subsampled_defect_free_pixels_estimate_the_same_value() -> None:
    rng = np.random.default_rng(9)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 20:30] = 1
    anomaly_map = (rng.random((64, 64)) + 0.6 * mask).astype(np.float32)
    full = aupro([anomaly_map], [mask])
    assert aupro_from_samples(_samples(anomaly_map, mask, stride=2)) == pytest.approx(full, abs=0.05)


def test_no_defect_region_is_an_error() -> None:
    with pytest.raises(ValueError, match="defect region"):
        aupro([np.zeros((4, 4))], [None])


def two_blob_mask() -> np.ndarray:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:20, 10:20] = 255  # region A
    mask[60:70, 60:70] = 255  # region B
    return mask


def test_region_recall_false_regions_and_localisation() -> None:
    boxes = [
        (12, 12, 16, 16),  # inside A: finds it, 16 px near a defect
        (40, 40, 45, 45),  # 21+ px from A and 16+ px diagonally from B: false, 25 px away from both
        (30, 10, 34, 14),  # 11-14 px right of A: not a find, but within tolerance, so not false
    ]
    counts = region_counts(boxes, two_blob_mask(), (100, 100))
    assert counts.gt_regions == 2 and counts.gt_regions_found == 1
    assert counts.region_recall == pytest.approx(0.5)
    assert counts.predicted_regions == 3 and counts.false_regions == 1
    assert counts.box_area == 16 + 25 + 16 and counts.box_area_near_defect == 32
    assert counts.localisation == pytest.approx(32 / 57)


def test_tolerance_zero_makes_near_boxes_false() -> None:
    counts = region_counts([(30, 10, 34, 14)], two_blob_mask(), (100, 100), tolerance_px=0)
    assert counts.false_regions == 1 and counts.localisation == 0.0


def test_box_touching_two_regions_finds_both() -> None:
    counts = region_counts([(15, 15, 65, 65)], two_blob_mask(), (100, 100))
    assert counts.gt_regions_found == 2 and counts.false_regions == 0


def test_good_image_every_region_is_false_and_counts_add_up() -> None:
    total = RegionCounts()
    total.add(region_counts([(0, 0, 5, 5), (50, 50, 52, 60)], None, (100, 100)))
    total.add(region_counts([], np.zeros((100, 100), np.uint8), (100, 100)))
    assert total.false_regions == 2 and total.predicted_regions == 2
    assert total.region_recall is None  # no ground-truth regions at all


def test_box_annotations_give_recall_per_type(tmp_path) -> None:
    from inspector.errors import DatasetError
    from inspector.quality.labelled import LabelledImage, boxes_found, read_box_annotations

    (tmp_path / "annotations").mkdir()
    image = LabelledImage(tmp_path / "test" / "defect" / "b1.png", "defect", tmp_path / "b1_mask.png")
    (tmp_path / "annotations" / "b1.txt").write_text("10,10,19,19,1\n40 40 49 49 6\n\n70,70,79,79,9\n")
    boxes = read_box_annotations(tmp_path, image)
    assert [(b.bbox, b.kind) for b in boxes] == [((10, 10, 20, 20), "open"), ((40, 40, 50, 50), "pin_hole"),
                                                 ((70, 70, 80, 80), "9")]
    # one region touching the first box's corner, one well clear of every box
    assert boxes_found(boxes, [(19, 19, 25, 25), (55, 0, 60, 5)]) == [True, False, False]
    good = LabelledImage(tmp_path / "test" / "good" / "b1.png", "good", None)
    assert read_box_annotations(tmp_path, good) == []  # good boards carry no boxes
    (tmp_path / "annotations" / "b1.txt").write_text("10,10,oops\n")
    with pytest.raises(DatasetError, match="b1.txt:1"):
        read_box_annotations(tmp_path, image)
