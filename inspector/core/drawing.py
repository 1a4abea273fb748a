"""What every picture of an inspection draws with: region outlines with their halo, number tags, text
labels, and a heatmap layer laid over a board (`compose`). The overlay (render.py) and the region
zooms (region_zoom.py) share them, so a region is outlined alike on both.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inspector.errors import InspectorError

BOX_COLOUR = (255, 0, 255)  # magenta: visible on green boards and on every colour the heatmap draws
HALO_COLOUR = (0, 0, 0)  # a dark edge on both sides of every outline, so it reads on magenta and white too
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 (x2/y2 exclusive), as Region.bbox


def compose(base: np.ndarray, layer: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """A BGRA layer laid over a board (BGR or gray, same size) by its alpha, scaled by `opacity`
    (0: the board alone, 1: the layer as drawn). A BGR layer covers the board evenly (old heatmaps)."""
    if not 0.0 <= opacity <= 1.0:
        raise InspectorError(f"heatmap opacity must be within [0, 1], got {opacity}")
    board = as_bgr(base)
    if layer.shape[:2] != board.shape[:2]:
        raise InspectorError(f"heatmap {layer.shape[1]}x{layer.shape[0]} and board "
                             f"{board.shape[1]}x{board.shape[0]} differ in size")
    if layer.ndim == 3 and layer.shape[2] == 4:
        weight = layer[..., 3:4].astype(np.float32) * np.float32(opacity / 255.0)
        mixed = board.astype(np.float32) * (1.0 - weight) + layer[..., :3].astype(np.float32) * weight
        return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return cv2.addWeighted(board, 1.0 - opacity, as_bgr(layer), opacity, 0.0)


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A gray, one-channel or BGRA picture as BGR (a BGR one as it is)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image



def outline_region(canvas: np.ndarray, bbox: Box, thickness: int, *, min_side: int = 0, gap: int = 0,
                   colour: tuple[int, int, int] = BOX_COLOUR) -> Box:
    """A box outline `thickness` px wide in `colour`, from the box's edge outwards, with a 1-px dark
    halo on both sides, so it reads on green boards, on every heatmap colour and on a magenta defect
    alike. `gap` puts it that many pixels outside the box (a zoom's defect pixels stay uncovered);
    `min_side` grows a tiny box about its centre, so a region of a few pixels gets a ring one can
    find. Returns the rectangle the outline covers, halo included (x1, y1, x2, y2 inclusive)."""
    x1, y1, x2, y2 = bbox
    x2, y2 = max(x1, x2 - 1), max(y1, y2 - 1)  # inclusive corners
    grow_x, grow_y = max(0, min_side - (x2 - x1 + 1)), max(0, min_side - (y2 - y1 + 1))
    x1, x2 = x1 - grow_x // 2 - gap, x2 + (grow_x - grow_x // 2) + gap
    y1, y2 = y1 - grow_y // 2 - gap, y2 + (grow_y - grow_y // 2) + gap
    out = max(1, thickness) - 1  # how far the outline reaches outside (x1, y1, x2, y2)
    _frame(canvas, (x1 - out - 1, y1 - out - 1, x2 + out + 1, y2 + out + 1), out + 3, HALO_COLOUR)
    _frame(canvas, (x1 - out, y1 - out, x2 + out, y2 + out), out + 1, colour)
    return x1 - out - 1, y1 - out - 1, x2 + out + 1, y2 + out + 1


def _frame(canvas: np.ndarray, outer: Box, width: int, colour: tuple[int, int, int]) -> None:
    """A frame `width` px wide inside the rectangle `outer` (inclusive), drawn as four filled bars:
    exact widths (OpenCV draws thick lines wider than asked)."""
    x1, y1, x2, y2 = outer
    for corner_a, corner_b in (((x1, y1), (x2, y1 + width - 1)), ((x1, y2 - width + 1), (x2, y2)),
                               ((x1, y1), (x1 + width - 1, y2)), ((x2 - width + 1, y1), (x2, y2))):
        cv2.rectangle(canvas, corner_a, corner_b, colour, cv2.FILLED)


def tag(canvas: np.ndarray, text: str, beside: Box, scale: float) -> None:
    """A region's number in black on a magenta patch next to the outline `beside` (what
    `outline_region` returns): above it, else below, left or right of it, so the patch never covers
    the region; clamped into the picture when none of those fit."""
    thickness = max(1, int(round(scale * 2)))
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(1, thickness)
    box_w, box_h = width + 2 * pad, height + baseline + 2 * pad
    x1, y1, x2, y2 = beside
    height_c, width_c = canvas.shape[:2]
    slide_x = min(max(0, x1), max(0, width_c - box_w))  # above or below: slid along the outline into the picture
    slide_y = min(max(0, y1), max(0, height_c - box_h))  # left or right: likewise
    places = [(slide_x, y1 - box_h), (slide_x, y2 + 1), (x1 - box_w, slide_y), (x2 + 1, slide_y)]
    fits = [(x, y) for x, y in places if 0 <= x <= width_c - box_w and 0 <= y <= height_c - box_h]
    x, y = fits[0] if fits else (slide_x, min(max(0, y1 - box_h), max(0, height_c - box_h)))
    cv2.rectangle(canvas, (x, y), (x + box_w - 1, y + box_h - 1), HALO_COLOUR, cv2.FILLED)
    cv2.rectangle(canvas, (x + 1, y + 1), (x + box_w - 2, y + box_h - 2), BOX_COLOUR, cv2.FILLED)
    cv2.putText(canvas, text, (x + pad, y + pad + height), FONT, scale, HALO_COLOUR, thickness, cv2.LINE_AA)


def outline_regions(canvas: np.ndarray, boxes: Sequence[Box], *, numbered: bool = True) -> np.ndarray:
    """Every region outlined on a full-board picture (drawn at the size it is shown), numbered 1.. in
    the order given (the order of the regions table), each box at least about 1/25 of the picture."""
    short = min(canvas.shape[:2])
    thickness = max(1, round(short / 240))
    min_side = max(8, short // 25)
    scale = max(0.4, min(0.9, short / 400))
    drawn = [outline_region(canvas, box, thickness, min_side=min_side) for box in boxes]
    if numbered:
        for number, covered in enumerate(drawn, start=1):
            tag(canvas, str(number), covered, scale)
    return canvas


def label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White text on a black box so it reads over any heatmap colour."""
    thickness = max(1, int(round(scale * 2)))
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    y = max(y, height + 2)
    x = min(max(0, x), max(0, canvas.shape[1] - width - 2))
    cv2.rectangle(canvas, (x, y - height - 2), (x + width + 2, y + baseline), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (x + 1, y), FONT, scale, TEXT_COLOUR, thickness, cv2.LINE_AA)

