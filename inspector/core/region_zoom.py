"""Region zooms: what an operator judges a region by, as review stations of AOI machines show it: for
each region (largest peak first) the board, the reference board at the same place (fixtured designs)
and the heatmap, cropped around the region, grown to a legible size and outlined alike; and the zooms
of one board as one picture (`zoom_sheet`, what `inspector inspect` writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.core.drawing import FONT, Box, as_bgr, compose, outline_region
from inspector.errors import InspectorError

ZOOM_LIMIT = 6  # zooms per board, largest peak first; the rest are counted
ZOOM_MARGIN = 0.6  # context around a region: this share of its larger side on every side
ZOOM_MIN_SIDE = 64  # board pixels: the smallest crop, so a region of a few pixels is seen in its surroundings
ZOOM_SIDE = 160  # pixels of each zoom panel as drawn (small crops are enlarged to it)
ZOOM_GAP = 4  # pixels between the panels of a zoom
PAD_COLOUR = (48, 48, 48)  # around a crop that is not square (a board narrower than the crop)
BAND_HEIGHT = 20  # pixels of each text line of a zoom sheet


@dataclass(frozen=True)
class RegionZoom:
    """One region as an operator judges it: square panels of the same crop, outlined alike."""

    number: int  # 1-based place in the board's region list (the outlines' and the table's numbers)
    bbox: Box
    peak: float
    window: Box  # the crop on the board, input pixels
    board: np.ndarray  # BGR panels, ZOOM_SIDE square
    reference: np.ndarray | None  # the reference board at the same place; None: no reference
    heatmap: np.ndarray | None  # the heatmap over the board in gray; None: no heatmap

    def panels(self) -> list[tuple[str, np.ndarray]]:
        named = [("board", self.board), ("reference", self.reference), ("heatmap", self.heatmap)]
        return [(name, panel) for name, panel in named if panel is not None]

    def strip(self, gap: int = ZOOM_GAP) -> np.ndarray:
        """The panels side by side (board, reference, heatmap), BGR."""
        pictures = [panel for _, panel in self.panels()]
        side = pictures[0].shape[0]
        canvas = np.full((side, len(pictures) * side + (len(pictures) - 1) * gap, 3), 255, np.uint8)
        for index, panel in enumerate(pictures):
            canvas[:, index * (side + gap):index * (side + gap) + side] = panel
        return canvas


def zoom_window(bbox: Box, shape: tuple[int, ...], *, margin: float = ZOOM_MARGIN,
                min_side: int = ZOOM_MIN_SIDE) -> Box:
    """The square crop around a region: its larger side grown by `margin` on every side, at least
    `min_side`, centred on the region and moved (not cut) to stay on the board; only a board smaller
    than the square cuts it."""
    height, width = shape[:2]
    x1, y1, x2, y2 = (int(v) for v in bbox)
    x1, x2 = min(max(0, x1), width - 1), min(max(x1 + 1, x2), width)
    y1, y2 = min(max(0, y1), height - 1), min(max(y1 + 1, y2), height)
    side = max(min_side, int(np.ceil(max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin))))
    crop_w, crop_h = min(side, width), min(side, height)
    left = min(max(0, (x1 + x2 - crop_w) // 2), width - crop_w)
    top = min(max(0, (y1 + y2 - crop_h) // 2), height - crop_h)
    return left, top, left + crop_w, top + crop_h


def zoom_order(peaks: Sequence[float], limit: int = ZOOM_LIMIT) -> tuple[list[int], int]:
    """Indices of the regions to zoom (largest peak first, ties in list order) and how many are left out."""
    order = sorted(range(len(peaks)), key=lambda index: -float(peaks[index]))
    return order[:max(0, limit)], max(0, len(peaks) - max(0, limit))


def _panel(crop: np.ndarray, origin: tuple[int, int], bbox: Box, side: int) -> np.ndarray:
    """A crop (its top-left at `origin` on the board) scaled onto a `side` square (nearest when
    enlarged twice or more: the board's pixels stay crisp), the region outlined just outside its box."""
    height, width = crop.shape[:2]
    factor = side / max(width, height)
    if factor >= 2.0:
        interpolation = cv2.INTER_NEAREST
    else:
        interpolation = cv2.INTER_LINEAR if factor > 1.0 else cv2.INTER_AREA
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    canvas = np.full((side, side, 3), PAD_COLOUR, np.uint8)
    left, top = (side - new_w) // 2, (side - new_h) // 2
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(as_bgr(crop), (new_w, new_h), interpolation=interpolation)
    x0, y0 = origin
    bx1, by1, bx2, by2 = bbox
    placed = (left + int(np.floor((bx1 - x0) * factor)), top + int(np.floor((by1 - y0) * factor)),
              left + int(np.ceil((bx2 - x0) * factor)), top + int(np.ceil((by2 - y0) * factor)))
    thickness = max(2, side // 80)
    outline_region(canvas, placed, thickness, min_side=max(6, side // 16), gap=thickness + 1)
    return canvas


def _grey(image: np.ndarray) -> np.ndarray:
    """The board in gray: the heatmap's greens and yellows do not mix with a green board's."""
    return cv2.cvtColor(cv2.cvtColor(as_bgr(image), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def region_zooms(board: np.ndarray, layer: np.ndarray | None, regions: Sequence[tuple[Box, float]],
                 reference: np.ndarray | None = None, *, limit: int = ZOOM_LIMIT,
                 side: int = ZOOM_SIDE) -> tuple[list[RegionZoom], int]:
    """Zooms of a board's regions ((bbox, peak) in list order), largest peak first, at most `limit`;
    and how many regions are left out. `layer`: the heatmap (BGRA from `heatmap_image`, or BGR), and
    `reference`: the reference board where this board lies (`reference_on_board`), each the board's
    size or None (its panel is then left out)."""
    for name, picture in (("heatmap", layer), ("reference board", reference)):
        if picture is not None and picture.shape[:2] != board.shape[:2]:
            raise InspectorError(f"{name} {picture.shape[1]}x{picture.shape[0]} and board "
                                 f"{board.shape[1]}x{board.shape[0]} differ in size")
    chosen, left_out = zoom_order([peak for _, peak in regions], limit)
    zooms = []
    for index in chosen:
        bbox, peak = regions[index]
        window = zoom_window(bbox, board.shape)
        x1, y1, x2, y2 = window
        crop = board[y1:y2, x1:x2]
        heat = None if layer is None else compose(_grey(crop), layer[y1:y2, x1:x2])
        zooms.append(RegionZoom(
            number=index + 1, bbox=(int(bbox[0]), int(bbox[1]), int(bbox[2]), int(bbox[3])), peak=float(peak),
            window=window, board=_panel(crop, (x1, y1), bbox, side),
            reference=None if reference is None else _panel(reference[y1:y2, x1:x2], (x1, y1), bbox, side),
            heatmap=None if heat is None else _panel(heat, (x1, y1), bbox, side),
        ))
    return zooms, left_out


def zoom_sheet(zooms: Sequence[RegionZoom], left_out: int) -> np.ndarray:
    """The zooms of one board as one picture (`inspector inspect` writes it): a strip per region under
    a line naming the region and each panel, and a last line counting the regions left out."""
    rows = [_caption_band(f"region {zoom.number}  peak {zoom.peak:.2f}", zoom) for zoom in zooms]
    width = max(row.shape[1] for row in rows) if rows else 3 * ZOOM_SIDE + 2 * ZOOM_GAP
    if left_out:
        rows.append(_text_band(f"+{left_out} more region{'s' if left_out > 1 else ''} (see the overlay)", width))
    if not rows:
        rows.append(_text_band("no region", width))
    padded = [np.pad(row, ((0, ZOOM_GAP), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.vstack(padded)


def _text_band(text: str, width: int) -> np.ndarray:
    band = np.full((BAND_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(band, text, (4, BAND_HEIGHT - 6), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return band


def _caption_band(title: str, zoom: RegionZoom) -> np.ndarray:
    """A zoom's strip under its title and the name of each panel."""
    strip = zoom.strip()
    band = _text_band(title, strip.shape[1])
    names = np.full((BAND_HEIGHT, strip.shape[1], 3), 255, np.uint8)
    side = zoom.board.shape[1]
    for index, (name, _) in enumerate(zoom.panels()):
        cv2.putText(names, name, (index * (side + ZOOM_GAP) + 4, BAND_HEIGHT - 6), FONT, 0.45, (80, 80, 80), 1,
                    cv2.LINE_AA)
    return np.vstack([band, names, strip])
