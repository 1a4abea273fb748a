"""Pictures of an inspection for people: heatmap, overlay, reconstruction, reference, written atomically.

The heatmap colour scale is FIXED: anomaly-map value 0 is blue and the calibrated pixel threshold
is red (values above are clipped to red). Never per-image min/max normalisation: that would paint
the least-good spot of a perfect board red and make every board look defective.

The heatmap is drawn only where it matters: its PNG is BGRA, the colours on that fixed scale
everywhere and the opacity 0 below HEATMAP_FLOOR of the pixel threshold, rising to full at the
threshold. Laid over a board (`compose`) it leaves the board's own pixels wherever the map is low,
instead of tinting the whole board blue; a reader that drops alpha still sees the whole map.

Region zooms are in region_zoom.py, the outlines, tags and labels both draw with in drawing.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.atomic import atomic_write_bytes
from inspector.core.drawing import as_bgr, compose, label, outline_regions
from inspector.core.results import InspectionResult
from inspector.errors import InspectorError, OutputError

COLORMAP = cv2.COLORMAP_JET  # 0 -> blue, 255 -> red
# Map values under this share of the pixel threshold are not drawn: a good board's texture stays
# the board's own colours. The opacity rises linearly from here to full at the threshold (red).
HEATMAP_FLOOR = 0.5
# The opacity of each heatmap level (0..255 = 0..pixel threshold on the fixed scale).
_LEVELS = np.arange(256, dtype=np.float32) / 255.0
ALPHA_OF_LEVEL = (np.clip((_LEVELS - HEATMAP_FLOOR) / (1.0 - HEATMAP_FLOOR), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


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



def _legend(canvas: np.ndarray, result: InspectionResult, scale: float) -> None:
    """Score line plus a small colour bar from 0 (blue) to the pixel threshold (red)."""
    text = f"{result.verdict.upper()}  score {result.score:.3f} / thr {result.threshold:.3f}"
    label(canvas, text, (2, 2), scale)
    bar_width = min(120, canvas.shape[1] // 3)
    bar_height = max(6, int(10 * scale * 2))
    if bar_width < 10 or canvas.shape[0] < 4 * bar_height:
        return
    ramp = np.linspace(0, 255, bar_width, dtype=np.float32).astype(np.uint8)[None, :].repeat(bar_height, 0)
    bar = cv2.applyColorMap(ramp, COLORMAP)
    y0 = canvas.shape[0] - bar_height - 4
    x0 = canvas.shape[1] - bar_width - 4
    canvas[y0:y0 + bar_height, x0:x0 + bar_width] = bar
    label(canvas, f"0  {red_at(result):.2f}", (x0, y0 - 2), scale * 0.8)


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
        label(canvas, f"{number}: {region.score:.2f}", (x1, y1 - 4), scale * 0.8)
    _legend(canvas, result, scale)
    return canvas



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
