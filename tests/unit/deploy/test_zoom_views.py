"""The dashboard's pictures from stored files: heatmaps of every vintage drawn only where the map
matters, outlines, and region zooms with and without a stored reference board."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.dashboard import images, zooms
from inspector.core import drawing, region_zoom, render
from inspector.core.results import InspectionResult

GREEN = (40, 110, 30)


def stored_board(folder: Path, *, heat: str = "bgra", reference: bool = True, size: tuple[int, int] = (120, 160),
                 stem: str = "0123456789abcdef-board") -> tuple[str, str]:
    """A board, its heatmap (as the runner writes it, or an older kind) and its reference, named as the
    runner names them; returns the board's and the heatmap's paths."""
    height, width = size
    board = np.full((height, width, 3), GREEN, np.uint8)
    board[60:64, 80:84] = (0, 0, 255)
    amap = np.zeros((height, width), np.float32)
    amap[60:64, 80:84] = 4.0
    result = InspectionResult(score=4.0, threshold=1.0, verdict="fail", regions=[], anomaly_map=amap,
                              reconstruction=None, model_hash="m", calibration_version=1, pixel_threshold=2.0)
    levels = render.heatmap_levels(amap, 2.0)
    pictures = {"bgra": render.heatmap_image(result), "jet": cv2.applyColorMap(levels, render.COLORMAP),
                "gray": levels}
    cv2.imwrite(str(folder / f"{stem}.png"), board)
    cv2.imwrite(str(folder / f"{stem}.heatmap.png"), pictures[heat])
    if reference:
        cv2.imwrite(str(folder / f"{stem}.reference.png"), np.full((height, width, 3), GREEN, np.uint8))
    return str(folder / f"{stem}.png"), str(folder / f"{stem}.heatmap.png")


REGION = {"bbox": [80, 60, 84, 64], "area": 16, "peak": 4.0, "mean": 3.0}


# ---------------------------------------------------------------------- heatmaps of every vintage
@pytest.mark.parametrize("kind", ["bgra", "jet", "gray"])
def test_every_stored_heatmap_is_drawn_only_where_the_map_matters(tmp_path: Path, kind: str) -> None:
    _, heat_path = stored_board(tmp_path, heat=kind)
    layer = images.read_heatmap(heat_path, tmp_path)
    assert layer.shape == (120, 160, 4)
    assert (layer[:50, :, 3] == 0).all()  # a zero map: the board shows, no blue tint
    assert (layer[60:64, 80:84, 3] == 255).all()  # twice the pixel threshold: red, fully drawn
    assert layer[62, 82, 2] > 100 and layer[62, 82, 0] < 60


def test_an_old_jet_heatmap_reads_back_to_its_levels_and_keeps_its_outline() -> None:
    levels = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    colour = cv2.applyColorMap(levels, render.COLORMAP)
    colour[0, :] = 255  # the white outline of what is not inspected
    layer = images.heatmap_layer(colour)
    assert np.array_equal(layer[1:, :, 3], np.tile(render.ALPHA_OF_LEVEL, (3, 1)))
    assert (layer[0, :, :] == 255).all()  # no JET colour: kept as drawn, opaque


def test_blend_draws_the_heatmap_where_it_matters_and_refuses_a_bad_opacity() -> None:
    board = np.full((40, 50, 3), 100, np.uint8)
    heat = np.zeros((20, 25), np.uint8)  # a gray map at half size: scaled onto the board
    heat[5:10, 5:10] = 255
    assert np.array_equal(images.blend(board, heat, 0.0), board)
    full = images.blend(board, heat, 1.0)
    assert tuple(full[0, 0]) == (100, 100, 100)  # zero map: the board's own pixels
    assert full[15, 15, 2] > 100 and full[15, 15, 0] < 60  # red where the map reached the threshold
    with pytest.raises(ValueError):
        images.blend(board, heat, 1.5)


def test_missing_and_outside_heatmaps_are_named(tmp_path: Path) -> None:
    with pytest.raises(images.MissingImage, match="gone.heatmap.png: heatmap missing or unreadable .file not found"):
        images.read_heatmap(tmp_path / "gone.heatmap.png")
    _, heat_path = stored_board(tmp_path)
    with pytest.raises(images.MissingImage, match="outside the data folder"):
        images.read_heatmap(heat_path, tmp_path / "elsewhere")


# ---------------------------------------------------------------------- the whole board
def test_the_board_picture_outlines_regions_at_the_size_shown() -> None:
    board = np.full((480, 640, 3), GREEN, np.uint8)
    small = images.board_picture(board, None, [REGION | {"bbox": [320, 240, 324, 244]}], opacity=0.7, width=240)
    assert small.shape == (180, 240, 3)
    ring = np.all(small == np.array(drawing.BOX_COLOUR, np.uint8), axis=2)
    ys, xs = np.nonzero(ring)
    assert xs.min() < 120 < xs.max() and ys.min() < 90 < ys.max()  # around the region, at the thumbnail's scale
    assert xs.max() - xs.min() >= 8  # a 4-px region gets a ring one can find
    drawn = images.draw_regions(np.full((40, 50, 3), 100, np.uint8), [{"bbox": [10, 10, 20, 20]}])
    assert tuple(drawn[15, 10]) == images.REGION_COLOUR and tuple(drawn[15, 15]) == (100, 100, 100)


# ---------------------------------------------------------------------- zooms from stored files
def test_zooms_of_a_fixtured_board_show_board_reference_and_heatmap(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path)
    views = zooms.build_views(image_path, heat_path, zooms.region_keys([REGION]), tmp_path, overview_width=120,
                              opacity=0.7, limit=6)
    assert views.overview is not None and views.overview.shape == (90, 120, 3)
    [zoom] = views.zooms
    assert zoom.panels == ("board", "reference", "heatmap") and views.reference_note is None
    assert zoom.caption == "Region 1 · peak 4.00 · 16 px"
    assert zoom.picture.shape == (region_zoom.ZOOM_SIDE, 3 * region_zoom.ZOOM_SIDE + 2 * region_zoom.ZOOM_GAP, 3)
    assert views.missing == () and views.left_out == 0
    assert zooms.panels_line(views) == "Each region, largest peak first: board | reference | heatmap."


def test_without_a_reference_file_the_zooms_say_so(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path, reference=False)
    views = zooms.build_views(image_path, heat_path, zooms.region_keys([REGION]), tmp_path, overview_width=None,
                              opacity=0.0, limit=6)
    [zoom] = views.zooms
    assert zoom.panels == ("board", "heatmap")
    assert views.reference_note == zooms.NO_REFERENCE
    assert zooms.NO_REFERENCE in zooms.panels_line(views)
    assert zooms.panels_line(views, short=True) == "Zooms: board | heatmap (no reference board)"


def test_a_reference_of_other_proportions_is_not_shown_and_the_reason_given(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path)
    cv2.imwrite(heat_path.replace(".heatmap.png", ".reference.png"), np.zeros((100, 100, 3), np.uint8))
    views = zooms.build_views(image_path, heat_path, zooms.region_keys([REGION]), tmp_path, overview_width=None,
                              opacity=0.0, limit=6)
    assert views.zooms[0].panels == ("board", "heatmap")
    assert views.reference_note is not None and "100x100 px, the board 160x120" in views.reference_note


def test_a_reference_stored_at_another_scale_is_fitted(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path)
    cv2.imwrite(heat_path.replace(".heatmap.png", ".reference.png"), np.full((60, 80, 3), GREEN, np.uint8))
    views = zooms.build_views(image_path, heat_path, zooms.region_keys([REGION]), tmp_path, overview_width=None,
                              opacity=0.0, limit=6)
    assert views.zooms[0].panels == ("board", "reference", "heatmap")


def test_a_missing_heatmap_costs_its_panel_only(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path)
    Path(heat_path).unlink()  # the reference is still found by the heatmap's name
    views = zooms.build_views(image_path, heat_path, zooms.region_keys([REGION]), tmp_path, overview_width=None,
                              opacity=0.7, limit=6)
    assert views.zooms[0].panels == ("board", "reference")
    assert len(views.missing) == 1 and "heatmap missing or unreadable" in views.missing[0]
    assert views.overview is not None


def test_a_missing_board_image_gives_no_pictures_and_says_which_file(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path)
    Path(image_path).unlink()
    views = zooms.build_views(image_path, heat_path, zooms.region_keys([REGION]), tmp_path, overview_width=None,
                              opacity=0.7, limit=6)
    assert views.overview is None and views.zooms == ()
    assert "board image missing or unreadable" in views.missing[0]


def test_a_board_without_regions_has_no_zooms(tmp_path: Path) -> None:
    image_path, heat_path = stored_board(tmp_path)
    views = zooms.build_views(image_path, heat_path, (), tmp_path, overview_width=None, opacity=0.7, limit=6)
    assert views.zooms == () and views.left_out == 0 and views.reference_note is None
    assert views.overview is not None


def test_a_gray_board_and_regions_without_peaks(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "g.png"), np.full((64, 64), 128, np.uint8))
    regions: list[dict[str, object]] = [{"bbox": [1, 1, 3, 3]}, {"bbox": [40, 40, 44, 44], "score": 2.5}]
    views = zooms.build_views(str(tmp_path / "g.png"), "", zooms.region_keys(regions), tmp_path,
                              overview_width=None, opacity=0.7, limit=6)
    assert [zoom.number for zoom in views.zooms] == [2, 1]  # the old "score" key is a peak too
    assert views.zooms[0].caption == "Region 2 · peak 2.50"
    assert views.missing == ("no heatmap was stored for this board",)


def test_files_beside_the_heatmap_are_found_by_name_only(tmp_path: Path) -> None:
    _, heat_path = stored_board(tmp_path)
    assert images.reference_beside(Path(heat_path)) == Path(heat_path.replace(".heatmap.png", ".reference.png"))
    assert images.reconstruction_beside(Path(heat_path)) is None  # not written
    assert images.reference_beside(tmp_path / "other.png") is None  # not a runner's heatmap name


# ---------------------------------------------------------------------- the grid
def test_zoom_grid_gives_the_largest_panels_that_fit_the_area() -> None:
    # The queue's first card on a 1366x768 screen: 600 x 450 px.
    assert [zooms.zoom_columns(k, 3, width=600, height=450) for k in range(1, 7)] == [1, 1, 2, 2, 2, 2]
    # The board page: 900 x 310 px.
    assert [zooms.zoom_columns(k, 3, width=900, height=310) for k in range(1, 7)] == [1, 2, 3, 3, 3, 3]
    assert zooms.zoom_columns(12, 3, width=100, height=50) == 3  # nothing fits: the lowest grid
