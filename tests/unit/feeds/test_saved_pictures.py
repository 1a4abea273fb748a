"""Pictures the feeds write per board: the runner's reference board for the dashboard's region zooms,
and `inspector inspect`'s zoom sheets. A picture that cannot be made costs that picture only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

from inspector.config import RunnerConfig
from inspector.core.region_zoom import ZOOM_SIDE
from inspector.core.results import InspectionResult, Region
from inspector.feeds.batch import HEATMAP_DIR, OVERLAY_DIR, ZOOM_DIR, save_pictures
from inspector.feeds.processor import Processor, make_processor
from inspector.store import Store
from tests.fake_engine import FakeEngine

SHIFT = np.array([[1, 0, 5], [0, 1, 3]], np.float64)  # the board lay 5 px right and 3 px down of the reference


def reference_board() -> np.ndarray:
    reference = np.full((60, 80, 3), (40, 110, 30), np.uint8)
    reference[20:30, 20:30] = 255
    return reference


def result(verdict: str, warp: np.ndarray | None = SHIFT, regions: list[Region] | None = None) -> InspectionResult:
    amap = np.zeros((60, 80), np.float32)
    amap[40:44, 50:54] = 3.0
    if regions is None:
        regions = [Region((50, 40, 54, 44), 16, 3.0, 3.0, (52.0, 42.0))] if verdict != "pass" else []
    return InspectionResult(score=3.0, threshold=1.0, verdict=verdict, regions=regions,  # type: ignore[arg-type]
                            anomaly_map=amap, reconstruction=None, model_hash=FakeEngine().model_hash,
                            calibration_version=1, pixel_threshold=2.0, warp=warp)


def processor(tmp_path: Path, reference: np.ndarray | None) -> tuple[Processor, Store]:
    engine = FakeEngine()
    if reference is not None:
        engine.registration = SimpleNamespace(reference=reference)  # type: ignore[attr-defined]
    store = Store.open(tmp_path / "data")
    config = RunnerConfig(station="t1", data_dir=str(tmp_path / "data"), json_lines=False)
    return make_processor(engine, store, config, tmp_path / "overlays"), store


def test_a_flagged_board_of_a_fixtured_design_gets_its_reference_where_it_lay(tmp_path: Path) -> None:
    run, store = processor(tmp_path, reference_board())
    board = np.full((60, 80, 3), 90, np.uint8)
    overlay_path, heatmap_path = run.save_images(board, result("fail"), "ab" * 32, "b1.png")
    assert Path(overlay_path).is_file() and heatmap_path.endswith("-b1.heatmap.png")
    reference = cv2.imread(heatmap_path.replace(".heatmap.png", ".reference.png"), cv2.IMREAD_UNCHANGED)
    assert reference.shape == (60, 80, 3)
    assert (reference[23:33, 25:35] == 255).all() and reference[20:23, 20:25].max() < 255  # moved by the warp
    assert store.events(kind="error") == []
    store.close()


def test_passed_boards_and_unfixtured_designs_get_no_reference(tmp_path: Path) -> None:
    run, store = processor(tmp_path, reference_board())
    _, heatmap_path = run.save_images(np.zeros((60, 80, 3), np.uint8), result("pass"), "cd" * 32, "good.png")
    assert not Path(heatmap_path.replace(".heatmap.png", ".reference.png")).exists()
    store.close()
    plain, store = processor(tmp_path / "plain", None)
    _, heatmap_path = plain.save_images(np.zeros((60, 80, 3), np.uint8), result("review"), "ef" * 32, "b2.png")
    assert Path(heatmap_path).is_file()
    assert not Path(heatmap_path.replace(".heatmap.png", ".reference.png")).exists()
    store.close()


def test_a_reference_that_cannot_be_placed_costs_only_that_picture(tmp_path: Path) -> None:
    run, store = processor(tmp_path, np.zeros((50, 50, 3), np.uint8))  # another shape, and no warp to place it
    overlay_path, heatmap_path = run.save_images(np.zeros((60, 80, 3), np.uint8), result("fail", warp=None),
                                                 "12" * 32, "b3.png")
    assert Path(overlay_path).is_file() and Path(heatmap_path).is_file()
    assert not Path(heatmap_path.replace(".heatmap.png", ".reference.png")).exists()
    [event] = store.events(kind="error")
    assert "b3.png: reference not written" in event.detail and "cannot be placed" in event.detail
    store.close()


def test_inspect_writes_a_zoom_sheet_for_a_board_with_regions(tmp_path: Path) -> None:
    board = np.full((60, 80, 3), 90, np.uint8)
    overlay_path, heatmap_path, zooms_path = save_pictures(tmp_path, "b.png", board, result("fail"),
                                                           reference_board())
    assert (overlay_path, heatmap_path, zooms_path) == (f"{OVERLAY_DIR}/b.png", f"{HEATMAP_DIR}/b.png",
                                                        f"{ZOOM_DIR}/b.png")
    assert zooms_path is not None
    sheet = cv2.imread(str(tmp_path / zooms_path))
    assert sheet.shape[1] >= 3 * ZOOM_SIDE  # board | reference | heatmap
    heatmap = cv2.imread(str(tmp_path / heatmap_path), cv2.IMREAD_UNCHANGED)
    assert heatmap.shape == (60, 80, 4)  # drawn only where the map matters: its alpha says where
    _, _, none = save_pictures(tmp_path, "good.png", board, result("pass"), reference_board())
    assert none is None and not (tmp_path / ZOOM_DIR / "good.png").exists()


def test_a_zoom_sheet_without_reference_has_two_panels(tmp_path: Path) -> None:
    board = np.full((60, 80), 90, np.uint8)  # a gray camera
    _, _, zooms_path = save_pictures(tmp_path, "g.png", board, result("review", warp=None), None)
    assert zooms_path is not None
    sheet = cv2.imread(str(tmp_path / zooms_path))
    assert 2 * ZOOM_SIDE <= sheet.shape[1] < 3 * ZOOM_SIDE
