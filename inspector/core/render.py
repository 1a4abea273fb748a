"""Pictures of an inspection for people: overlay, heatmap, region zooms, reconstruction, written atomically.

The heatmap colour scale is FIXED: anomaly-map value 0 is blue and the calibrated pixel threshold
is red (values above are clipped to red). Never per-image min/max normalisation: that would paint
the least-good spot of a perfect board red and make every board look defective.

The heatmap is drawn only where it matters: its PNG is BGRA, the colours on that fixed scale
everywhere and the opacity 0 below HEATMAP_FLOOR of the pixel threshold, rising to full at the
threshold. Laid over a board (`compose`) it leaves the board's own pixels wherever the map is low,
instead of tinting the whole board blue; a reader that drops alpha still sees the whole map.

Region zooms (`region_zooms`) are what an operator judges a region by, as review stations of AOI
machines show it: for each region (largest peak first) the board, the reference board at the same
place (fixtured designs) and the heatmap, cropped around the region, grown to a legible size and
outlined alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.atomic import atomic_write_bytes
from inspector.core.results import InspectionResult
from inspector.errors import InspectorError, OutputError

COLORMAP = cv2.COLORMAP_JET  # 0 -> blue, 255 -> red
BOX_COLOUR = (255, 0, 255)  # magenta: visible on green boards and on every colour the heatmap draws
HALO_COLOUR = (0, 0, 0)  # a dark edge on both sides of every outline, so it reads on magenta and white too
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Map values under this share of the pixel threshold are not drawn: a good board's texture stays
# the board's own colours. The opacity rises linearly from here to full at the threshold (red).
HEATMAP_FLOOR = 0.5
# The opacity of each heatmap level (0..255 = 0..pixel threshold on the fixed scale).
_LEVELS = np.arange(256, dtype=np.float32) / 255.0
ALPHA_OF_LEVEL = (np.clip((_LEVELS - HEATMAP_FLOOR) / (1.0 - HEATMAP_FLOOR), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 (x2/y2 exclusive), as Region.bbox

ZOOM_LIMIT = 6  # zooms per board, largest peak first; the rest are counted
ZOOM_MARGIN = 0.6  # context around a region: this share of its larger side on every side
ZOOM_MIN_SIDE = 64  # board pixels: the smallest crop, so a region of a few pixels is seen in its surroundings
ZOOM_SIDE = 160  # pixels of each zoom panel as drawn (small crops are enlarged to it)
ZOOM_GAP = 4  # pixels between the panels of a zoom
PAD_COLOUR = (48, 48, 48)  # around a crop that is not square (a board narrower than the crop)
BAND_HEIGHT = 20  # pixels of each text line of a zoom sheet


def red_at(result: InspectionResult) -> float:
    """The map value drawn as full red: the pixel threshold, else the image threshold (same scale)."""
    value = result.pixel_threshold if result.pixel_threshold is not None else result.threshold
    if not np.isfinite(value) or value <= 0:
        raise InspectorError(f"cannot draw a heatmap: threshold {value!r} is not a positive number")
    return float(value)


def heatmap_levels(anomaly_map: np.ndarray, red: float) -> np.ndarray:
    """uint8 levels of the map on the fixed scale: 0 = 0, 255 = `red` (the pixel threshold) and above."""
    return np.clip(anomaly_map.astype(np.float32) * (255.0 / red), 0, 255).astype(np.uint8)


def layer_of_levels(levels: np.ndarray) -> np.ndarray:
    """BGRA heatmap of uint8 levels: JET colours everywhere, opacity only where the map matters."""
    colours = cv2.applyColorMap(levels, COLORMAP)
    return np.dstack([colours, cv2.LUT(levels, ALPHA_OF_LEVEL)])


def heatmap_image(result: InspectionResult) -> np.ndarray:
    """The anomaly map as a BGRA picture on the fixed scale (0 blue, pixel threshold red), opaque only
    where the map is at least HEATMAP_FLOOR of the threshold, with what is not inspected outlined."""
    layer = layer_of_levels(heatmap_levels(result.anomaly_map, red_at(result)))
    return _outline_inspection_area(layer, result)


def _outline_inspection_area(canvas: np.ndarray, result: InspectionResult) -> np.ndarray:
    """The inspection area outlined in white (opaque on a BGRA canvas), holes included: outside a
    QA-drawn area, and the surround (a clamp, a glare) inside it, are not inspected."""
    area = getattr(result, "inspection_area", None)
    if area is not None and area.shape == canvas.shape[:2]:
        contours, _ = cv2.findContours((area > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, (255,) * canvas.shape[2], 1)
    return canvas


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
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def reconstruction_image(result: InspectionResult) -> np.ndarray:
    """The model's reconstruction as BGR (what the board "should" look like)."""
    if result.reconstruction is None:
        raise InspectorError("this result carries no reconstruction (set inspect.save_reconstruction)")
    return as_bgr(result.reconstruction)


def reference_on_board(reference: np.ndarray, warp: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The reference board where this board lies in the photo (HxW of `shape`), or None when it cannot
    be placed. `warp` (InspectionResult.warp) maps the reference's frame onto the photo, as the engine
    moves maps back; without one the board was not moved (registration without alignment), so the
    reference is already in place when it has the board's size or, scaled, its proportions."""
    height, width = shape[:2]
    if warp is not None:
        return cv2.warpAffine(reference, np.asarray(warp, np.float32), (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ref_height, ref_width = reference.shape[:2]
    if (ref_height, ref_width) == (height, width):
        return reference
    if abs(ref_width / ref_height - width / height) > 0.01 * width / height:
        return None  # another shape: where the board lies on it is unknown
    return cv2.resize(reference, (width, height), interpolation=cv2.INTER_LINEAR)


def reference_image(reference: np.ndarray, result: InspectionResult, shape: tuple[int, ...]) -> np.ndarray:
    """The reference board where this board lay in its photo (of HxW `shape`), to be zoomed beside it;
    OutputError when it cannot be placed (a reference of another shape and no warp to place it by)."""
    placed = reference_on_board(reference, result.warp, shape)
    if placed is None:
        raise OutputError(f"the reference board is {reference.shape[1]}x{reference.shape[0]} px and cannot be "
                          f"placed on a {shape[1]}x{shape[0]} board without its alignment")
    return placed


# ---------------------------------------------------------------------- outlines and labels
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


def _label(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """White text on a black box so it reads over any heatmap colour."""
    thickness = max(1, int(round(scale * 2)))
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = origin
    y = max(y, height + 2)
    x = min(max(0, x), max(0, canvas.shape[1] - width - 2))
    cv2.rectangle(canvas, (x, y - height - 2), (x + width + 2, y + baseline), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (x + 1, y), FONT, scale, TEXT_COLOUR, thickness, cv2.LINE_AA)


def _legend(canvas: np.ndarray, result: InspectionResult, scale: float) -> None:
    """Score line plus a small colour bar from 0 (blue) to the pixel threshold (red)."""
    text = f"{result.verdict.upper()}  score {result.score:.3f} / thr {result.threshold:.3f}"
    _label(canvas, text, (2, 2), scale)
    bar_width = min(120, canvas.shape[1] // 3)
    bar_height = max(6, int(10 * scale * 2))
    if bar_width < 10 or canvas.shape[0] < 4 * bar_height:
        return
    ramp = np.linspace(0, 255, bar_width, dtype=np.float32).astype(np.uint8)[None, :].repeat(bar_height, 0)
    bar = cv2.applyColorMap(ramp, COLORMAP)
    y0 = canvas.shape[0] - bar_height - 4
    x0 = canvas.shape[1] - bar_width - 4
    canvas[y0:y0 + bar_height, x0:x0 + bar_width] = bar
    _label(canvas, f"0  {red_at(result):.2f}", (x0, y0 - 2), scale * 0.8)


def overlay(image: np.ndarray, result: InspectionResult, *, opacity: float = 0.6) -> np.ndarray:
    """BGR picture for operators: the board with the fixed-scale heatmap where it matters, each
    region outlined with its number and peak score, and the legend."""
    if not 0.0 <= opacity <= 1.0:
        raise InspectorError(f"overlay opacity must be within [0, 1], got {opacity}")
    base = as_bgr(image)
    if base.shape[:2] != result.anomaly_map.shape:
        raise InspectorError(
            f"image {base.shape[1]}x{base.shape[0]} and anomaly map "
            f"{result.anomaly_map.shape[1]}x{result.anomaly_map.shape[0]} differ in size"
        )
    canvas = compose(base, heatmap_image(result), opacity)
    scale = max(0.35, min(1.0, min(canvas.shape[:2]) / 800))
    _outline_inspection_area(canvas, result)
    outline_regions(canvas, [region.bbox for region in result.regions], numbered=False)
    for number, region in enumerate(result.regions, start=1):
        x1, y1, _, _ = region.bbox
        _label(canvas, f"{number}: {region.score:.2f}", (x1, y1 - 4), scale * 0.8)
    _legend(canvas, result, scale)
    return canvas


# ---------------------------------------------------------------------- region zooms
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


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a PNG atomically (temporary file + os.replace): readers never see half a file."""
    path = Path(path)
    ok, encoded = (False, None)
    try:
        ok, encoded = cv2.imencode(".png", image)
    except cv2.error as exc:
        raise OutputError(f"{path}: cannot encode PNG ({exc.msg.strip()})") from exc
    if not ok:
        raise OutputError(f"{path}: cannot encode PNG from an array of shape {image.shape} {image.dtype}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, encoded.tobytes())
    except OSError as exc:
        raise OutputError(f"{path}: cannot write PNG ({exc.strerror or exc})") from exc
    return path
