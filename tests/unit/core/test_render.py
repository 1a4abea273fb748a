"""Overlays use a fixed colour scale (a good board never shows red) and PNGs are written atomically."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.render import heatmap_image, overlay, save_png
from inspector.core.results import InspectionResult, Region
from inspector.errors import OutputError


def result_with(anomaly_map: np.ndarray, regions: list[Region] | None = None, pixel_threshold: float = 2.0,
                verdict: str = "pass") -> InspectionResult:
    return InspectionResult(score=float(anomaly_map.max()), threshold=1.5, verdict=verdict, regions=regions or [],
                            anomaly_map=anomaly_map.astype(np.float32), reconstruction=None, model_hash="abc",
                            calibration_version=1, pixel_threshold=pixel_threshold)


def is_red(bgr: np.ndarray) -> np.ndarray:
    return (bgr[..., 2] > 100) & (bgr[..., 0] < 60) & (bgr[..., 1] < 60)


def test_heatmap_scale_is_fixed_not_per_image() -> None:
    quiet = np.full((20, 20), 0.2, np.float32)
    quiet[5, 5] = 0.4  # the "worst" pixel of a good board: per-image normalisation would make it red
    heat = heatmap_image(result_with(quiet))
    assert not is_red(heat).any()
    assert heat[0, 0, 0] > heat[0, 0, 2]  # low values are blue
    hot = quiet.copy()
    hot[10:15, 10:15] = 2.0  # at the pixel threshold
    hot[0:2, 0:2] = 50.0  # far above: clipped to the same red
    heat = heatmap_image(result_with(hot))
    assert is_red(heat[10:15, 10:15]).all() and is_red(heat[0:2, 0:2]).all()
    assert np.array_equal(heat[0, 0], heat[12, 12])
    # The same value gets the same colour in any image.
    assert np.array_equal(heatmap_image(result_with(quiet))[0, 0], heat[19, 19])


def test_overlay_draws_boxes_and_keeps_size() -> None:
    image = np.full((64, 80), 90, np.uint8)
    anomaly = np.zeros((64, 80), np.float32)
    anomaly[30:40, 30:50] = 3.0
    region = Region(bbox=(30, 30, 50, 40), area=200, peak=3.0, mean=3.0, centroid=(40.0, 35.0))
    picture = overlay(image, result_with(anomaly, [region], verdict="fail"), opacity=0.5)
    assert picture.shape == (64, 80, 3) and picture.dtype == np.uint8
    assert tuple(picture[39, 49]) == (255, 0, 255)  # box corner drawn in magenta
    plain = overlay(image, result_with(anomaly, [], verdict="fail"), opacity=0.0)
    assert plain[50, 10].tolist() == [90, 90, 90]  # opacity 0 leaves pixels away from the legend untouched


def test_what_is_not_inspected_is_outlined_on_the_heatmap_and_the_overlay() -> None:
    anomaly = np.zeros((40, 40), np.float32)
    plain = result_with(anomaly)
    white = lambda picture: (picture == 255).all(axis=2)  # noqa: E731
    assert not white(heatmap_image(plain)).any()
    area = np.full((40, 40), 255, np.uint8)
    area[10:20, 10:20] = 0  # a clamp inside the inspected board
    outlined = result_with(anomaly)
    outlined.inspection_area = area
    heat = heatmap_image(outlined)
    assert white(heat)[9, 15] or white(heat)[10, 15]  # the hole's edge
    assert not white(heat)[30:35, 30:35].any()  # not inside the inspected board
    assert white(overlay(np.zeros((40, 40), np.uint8), outlined, opacity=0.5))[10:20, 9:21].any()


def test_overlay_refuses_mismatched_sizes() -> None:
    with pytest.raises(Exception, match="differ in size"):
        overlay(np.zeros((10, 10), np.uint8), result_with(np.zeros((12, 12))))


def test_save_png_round_trip_and_no_leftovers(tmp_path: Path) -> None:
    image = np.arange(300, dtype=np.uint8).reshape(10, 10, 3)
    path = save_png(tmp_path / "sub" / "a.png", image)
    assert np.array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), image)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]


def test_save_png_failure_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=str(blocker / "a.png")):
        save_png(blocker / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(OutputError, match="cannot encode"):
        save_png(tmp_path / "b.png", np.zeros((4, 4, 7), np.uint8))
    assert not (tmp_path / "b.png").exists()
