"""Region zooms and the heatmap drawn only where it matters (inspector/core/region_zoom.py, render.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core import drawing, region_zoom, render
from inspector.core.results import InspectionResult, Region
from inspector.errors import InspectorError, OutputError

MAGENTA = drawing.BOX_COLOUR
GREEN = (40, 110, 30)  # BGR: a green board


def result_for(anomaly_map: np.ndarray, regions: list[Region] | None = None, *, pixel_threshold: float = 2.0,
               warp: np.ndarray | None = None) -> InspectionResult:
    return InspectionResult(score=float(anomaly_map.max()), threshold=1.5, verdict="fail" if regions else "pass",
                            regions=regions or [], anomaly_map=anomaly_map.astype(np.float32), reconstruction=None,
                            model_hash="abc", calibration_version=1, pixel_threshold=pixel_threshold, warp=warp)


def green_board(height: int = 120, width: int = 160) -> np.ndarray:
    board = np.full((height, width, 3), GREEN, np.uint8)
    board[:, ::10] = (200, 200, 200)  # traces: something for crops to show
    return board


def magenta_pixels(picture: np.ndarray) -> np.ndarray:
    return np.all(picture == np.array(MAGENTA, np.uint8), axis=2)


# ---------------------------------------------------------------------- heatmap where it matters
def test_heatmap_is_opaque_only_where_the_map_matters_on_the_fixed_scale() -> None:
    amap = np.zeros((10, 40), np.float32)
    amap[:, 10:20] = 0.4  # 0.2 of the pixel threshold: a good board's texture
    amap[:, 20:30] = 1.5  # 0.75 of it: worth seeing, half drawn
    amap[:, 30:] = 9.0  # far over it: red, fully drawn
    layer = render.heatmap_image(result_for(amap))
    assert layer.shape == (10, 40, 4) and layer.dtype == np.uint8
    alpha = layer[0, :, 3]
    assert (alpha[:20] == 0).all()  # under HEATMAP_FLOOR of the threshold: the board shows
    assert 100 < alpha[25] < 155  # halfway from the floor to the threshold
    assert (alpha[30:] == 255).all()
    assert layer[0, 35, 2] > 100 and layer[0, 35, 0] < 60  # red at and above the pixel threshold
    # The colours stay on the fixed scale everywhere (a reader that drops alpha sees the whole map).
    assert layer[0, 0, 0] > layer[0, 0, 2]  # 0 is blue


def test_composing_leaves_the_board_where_the_map_is_low_and_scales_with_opacity() -> None:
    board = green_board(10, 40)
    amap = np.zeros((10, 40), np.float32)
    amap[:, 30:] = 9.0
    layer = render.heatmap_image(result_for(amap))
    drawn = drawing.compose(board, layer, 1.0)
    assert np.array_equal(drawn[:, :30], board[:, :30])  # no blue tint over a good board
    assert np.array_equal(drawn[:, 30:], layer[:, 30:, :3])  # fully the heatmap where it is opaque
    assert np.array_equal(drawing.compose(board, layer, 0.0), board)
    half = drawing.compose(board, layer, 0.5)[0, 35].astype(int)
    assert np.abs(half - (board[0, 35].astype(int) + layer[0, 35, :3].astype(int)) / 2).max() <= 1
    with pytest.raises(InspectorError, match="opacity"):
        drawing.compose(board, layer, 1.2)
    with pytest.raises(InspectorError, match="differ in size"):
        drawing.compose(board[:5], layer, 0.5)


def test_overlay_keeps_a_good_board_its_own_colours() -> None:
    board = green_board()
    quiet = np.full(board.shape[:2], 0.5, np.float32)  # a good board: a quarter of the threshold everywhere
    picture = render.overlay(board, result_for(quiet))
    assert np.array_equal(picture[40:80, 20:100], board[40:80, 20:100])  # away from the legend: untouched


# ---------------------------------------------------------------------- crops
def test_a_tiny_region_gets_a_legible_crop_centred_on_it() -> None:
    window = region_zoom.zoom_window((80, 60, 83, 62), (120, 160))  # 3x2 pixels
    x1, y1, x2, y2 = window
    assert x2 - x1 == y2 - y1 == region_zoom.ZOOM_MIN_SIDE
    assert x1 < 80 and x2 > 83 and y1 < 60 and y2 > 62
    assert abs((x1 + x2) / 2 - 81.5) <= 1 and abs((y1 + y2) / 2 - 61) <= 1


def test_a_large_region_gets_its_margin() -> None:
    x1, y1, x2, y2 = region_zoom.zoom_window((100, 100, 200, 140), (1000, 1000))
    side = int(np.ceil(100 * (1 + 2 * region_zoom.ZOOM_MARGIN)))
    assert (x2 - x1, y2 - y1) == (side, side)
    assert x1 <= 100 - 100 * region_zoom.ZOOM_MARGIN + 1 and x2 >= 200 + 100 * region_zoom.ZOOM_MARGIN - 1


@pytest.mark.parametrize("bbox", [(0, 0, 5, 5), (155, 115, 160, 120), (0, 110, 4, 120), (150, 0, 160, 3)])
def test_crops_at_the_board_edges_are_moved_onto_the_board_not_cut(bbox: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = region_zoom.zoom_window(bbox, (120, 160))
    assert 0 <= x1 and 0 <= y1 and x2 <= 160 and y2 <= 120
    assert x2 - x1 == y2 - y1 == region_zoom.ZOOM_MIN_SIDE  # still the full square
    assert x1 <= bbox[0] and y1 <= bbox[1] and x2 >= bbox[2] and y2 >= bbox[3]


def test_a_board_smaller_than_the_crop_is_shown_whole_and_padded() -> None:
    board = green_board(30, 100)
    assert region_zoom.zoom_window((40, 10, 44, 14), board.shape) == (10, 0, 74, 30)  # centred on x = 42
    [zoom], _ = region_zoom.region_zooms(board, None, [((40, 10, 44, 14), 3.0)])
    assert zoom.board.shape == (region_zoom.ZOOM_SIDE, region_zoom.ZOOM_SIDE, 3)
    assert tuple(zoom.board[2, region_zoom.ZOOM_SIDE // 2]) == region_zoom.PAD_COLOUR  # above the 30-row board


def test_a_box_outside_the_board_is_clamped_onto_it() -> None:
    x1, y1, x2, y2 = region_zoom.zoom_window((-20, -5, 500, 3), (120, 160))
    assert (x1, y1) == (0, 0) and x2 <= 160 and y2 <= 120 and x2 - x1 > 0 and y2 - y1 > 0


# ---------------------------------------------------------------------- zooms
def test_zooms_are_largest_peak_first_capped_and_the_rest_counted() -> None:
    board = green_board(400, 400)
    regions = [((20 * i + 5, 20 * i + 5, 20 * i + 10, 20 * i + 10), peak)
               for i, peak in enumerate([1.0, 5.0, 3.0, 2.0, 4.0, 0.5, 6.0, 2.5])]
    zooms, left_out = region_zoom.region_zooms(board, None, regions)
    assert [zoom.number for zoom in zooms] == [7, 2, 5, 3, 8, 4]  # 1-based numbers of the region list
    assert [zoom.peak for zoom in zooms] == [6.0, 5.0, 4.0, 3.0, 2.5, 2.0]
    assert left_out == 2 and len(zooms) == region_zoom.ZOOM_LIMIT
    assert region_zoom.zoom_order([2.0, 2.0, 1.0], limit=2) == ([0, 1], 1)  # ties keep the list order


def test_no_regions_no_zooms() -> None:
    assert region_zoom.region_zooms(green_board(), None, []) == ([], 0)
    sheet = region_zoom.zoom_sheet([], 0)
    assert sheet.ndim == 3 and sheet.shape[0] >= region_zoom.BAND_HEIGHT  # says "no region"


def test_zoom_panels_show_the_same_place_outlined_without_covering_the_region() -> None:
    board = green_board()
    board[50:54, 70:74] = (0, 0, 255)  # a red defect, 4x4
    reference = green_board()
    amap = np.zeros(board.shape[:2], np.float32)
    amap[50:54, 70:74] = 4.0
    layer = render.heatmap_image(result_for(amap))
    [zoom], left_out = region_zoom.region_zooms(board, layer, [((70, 50, 74, 54), 4.0)], reference)
    assert left_out == 0 and zoom.window == region_zoom.zoom_window((70, 50, 74, 54), board.shape)
    assert [name for name, _ in zoom.panels()] == ["board", "reference", "heatmap"]
    assert zoom.reference is not None and zoom.heatmap is not None
    factor = region_zoom.ZOOM_SIDE / region_zoom.ZOOM_MIN_SIDE
    x0, y0 = zoom.window[:2]
    cx, cy = int((72 - x0) * factor), int((52 - y0) * factor)  # the defect's centre in the panel
    assert tuple(zoom.board[cy, cx]) == (0, 0, 255)  # enlarged, not covered by its outline
    assert tuple(zoom.reference[cy, cx]) == GREEN  # the good board at the same place
    assert zoom.heatmap[cy, cx, 2] > 100 and zoom.heatmap[cy, cx, 0] < 60  # red there
    for panel in (zoom.board, zoom.reference, zoom.heatmap):
        ring = magenta_pixels(panel)
        assert ring.any() and not ring[int((50 - y0) * factor):int((54 - y0) * factor),
                                       int((70 - x0) * factor):int((74 - x0) * factor)].any()
    strip = zoom.strip()
    assert strip.shape == (region_zoom.ZOOM_SIDE, 3 * region_zoom.ZOOM_SIDE + 2 * region_zoom.ZOOM_GAP, 3)
    # Away from the region the heatmap panel is the board in gray (the map is zero there).
    corner = zoom.heatmap[3, 3]
    assert corner[0] == corner[1] == corner[2]


def test_small_crops_are_enlarged_with_crisp_pixels() -> None:
    board = np.zeros((64, 64, 3), np.uint8)
    board[::2, :] = 255  # one-pixel stripes: blurred away by linear interpolation, kept by nearest
    [zoom], _ = region_zoom.region_zooms(board, None, [((30, 30, 32, 32), 3.0)])
    values = set(np.unique(zoom.board[5:20, 5:20]).tolist())
    assert values <= {0, 255}


def test_gray_boards_zoom_like_colour_boards() -> None:
    gray = np.full((80, 80), 120, np.uint8)
    zooms, _ = region_zoom.region_zooms(gray, None, [((10, 10, 14, 14), 2.0)], np.full((80, 80), 90, np.uint8))
    assert zooms[0].reference is not None
    assert zooms[0].board.shape == zooms[0].reference.shape == (region_zoom.ZOOM_SIDE, region_zoom.ZOOM_SIDE, 3)
    assert tuple(zooms[0].board[region_zoom.ZOOM_SIDE - 3, region_zoom.ZOOM_SIDE - 3]) == (120, 120, 120)
    assert zooms[0].heatmap is None and [name for name, _ in zooms[0].panels()] == ["board", "reference"]


def test_zoom_inputs_of_another_size_are_refused() -> None:
    with pytest.raises(InspectorError, match="reference board 10x10 and board 160x120 differ"):
        region_zoom.region_zooms(green_board(), None, [((1, 1, 3, 3), 2.0)], np.zeros((10, 10, 3), np.uint8))


def test_zoom_sheet_labels_each_region_and_counts_the_rest() -> None:
    board = green_board(400, 400)
    regions = [((50 * i, 50 * i, 50 * i + 6, 50 * i + 6), 1.0 + i) for i in range(8)]
    zooms, left_out = region_zoom.region_zooms(board, None, regions)
    sheet = region_zoom.zoom_sheet(zooms, left_out)
    row = 2 * region_zoom.BAND_HEIGHT + region_zoom.ZOOM_SIDE + region_zoom.ZOOM_GAP
    assert sheet.shape[0] == 6 * row + region_zoom.BAND_HEIGHT + region_zoom.ZOOM_GAP
    assert sheet.shape[1] == region_zoom.ZOOM_SIDE  # board panels only: no reference, no heatmap given


# ---------------------------------------------------------------------- the reference where the board lay
def test_the_reference_is_moved_where_the_board_lay() -> None:
    reference = np.zeros((60, 80, 3), np.uint8)
    reference[20:30, 20:30] = 255
    shift = np.array([[1, 0, 7], [0, 1, -4]], np.float64)  # the board lay 7 px right, 4 px up
    placed = render.reference_on_board(reference, shift, (60, 80, 3))
    assert placed is not None and placed.shape == (60, 80, 3)
    assert (placed[16:26, 27:37] == 255).all() and placed[20:30, 20:27].max() == 0
    assert render.reference_image(reference, result_for(np.zeros((60, 80)), warp=shift), (60, 80)).shape == (60, 80, 3)


def test_a_reference_without_warp_is_used_as_is_or_scaled_when_only_its_size_differs() -> None:
    reference = np.arange(60 * 80, dtype=np.uint32).reshape(60, 80).astype(np.uint8)
    assert render.reference_on_board(reference, None, (60, 80)) is reference
    scaled = render.reference_on_board(reference, None, (120, 160, 3))
    assert scaled is not None and scaled.shape == (120, 160)
    assert render.reference_on_board(reference, None, (60, 120)) is None  # other proportions: unknown place
    with pytest.raises(OutputError, match="cannot be placed on a 120x60 board"):
        render.reference_image(reference, result_for(np.zeros((60, 120))), (60, 120))


# ---------------------------------------------------------------------- outlines on the full board
def test_outlines_are_numbered_and_tiny_regions_get_a_ring_one_can_find() -> None:
    canvas = green_board(240, 320)
    drawing.outline_regions(canvas, [(100, 100, 102, 102), (10, 150, 60, 200)])
    ring = magenta_pixels(canvas)
    ys, xs = np.nonzero(ring[80:125, 80:125])
    assert xs.max() - xs.min() >= 8 and ys.max() - ys.min() >= 8  # grown about the 2x2 region
    assert ring[150:200, 10].any()  # the large box on its edge
    assert not ring[155:195, 15:55].any()  # its inside untouched
    # A dark halo on both sides of each outline: it reads on a magenta defect too.
    assert tuple(canvas[175, 9]) == drawing.HALO_COLOUR or tuple(canvas[175, 11]) == drawing.HALO_COLOUR


def test_outline_gap_puts_the_ring_outside_the_box() -> None:
    canvas = np.full((40, 40, 3), 128, np.uint8)
    covered = drawing.outline_region(canvas, (15, 15, 25, 25), 2, gap=3)  # the box's pixels: 15..24
    assert covered == (10, 10, 29, 29)  # 3 px gap, 2 px of magenta, 1 px halo each side
    assert (canvas[14:26, 14:26] == 128).all()  # the box and one pixel around it untouched
    ring = magenta_pixels(canvas)
    assert ring[11:13, 11:29].all() and not ring[13, 13:27].any() and not ring[10].any()
    assert tuple(canvas[13, 20]) == tuple(canvas[10, 20]) == drawing.HALO_COLOUR


def test_heatmap_picture_round_trips_as_bgra_png(tmp_path: Path) -> None:
    amap = np.zeros((20, 20), np.float32)
    amap[5:10, 5:10] = 3.0
    path = render.save_png(tmp_path / "h.png", render.heatmap_image(result_for(amap)))
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert back.shape == (20, 20, 4) and back[7, 7, 3] == 255 and back[0, 0, 3] == 0


def test_a_region_at_the_top_edge_gets_its_number_beside_not_over_it() -> None:
    canvas = np.full((100, 100, 3), 100, np.uint8)
    drawing.outline_regions(canvas, [(40, 0, 60, 10)])
    assert (canvas[2:8, 42:58] == 100).all()  # the region itself stays visible
    assert magenta_pixels(canvas)[12:40, 35:65].any()  # its number patch below it


def test_a_region_at_the_left_edge_gets_its_number_above_it() -> None:
    canvas = np.full((100, 100, 3), 100, np.uint8)
    drawing.outline_regions(canvas, [(0, 50, 10, 60)])
    patch = magenta_pixels(canvas[:49])  # above the outline
    assert patch[:, :12].any() and not magenta_pixels(canvas)[50:70, 14:].any()
