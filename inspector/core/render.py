"""Pictures of an inspection for people: overlay, heatmap, reconstruction, written atomically.

The heatmap colour scale is FIXED: anomaly-map value 0 is blue and the calibrated pixel threshold
is red (values above are clipped to red). Never per-image min/max normalisation: that would paint
the least-good spot of a perfect board red and make every board look defective.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.atomic import atomic_write_bytes
from inspector.core.results import InspectionResult
from inspector.errors import InspectorError, OutputError

COLORMAP = cv2.COLORMAP_JET  # 0 -> blue, 255 -> red
BOX_COLOUR = (255, 0, 255)  # magenta: visible on every JET colour and on green boards
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def red_at(result: InspectionResult) -> float:
    """The map value drawn as full red: the pixel threshold, else the image threshold (same scale)."""
    value = result.pixel_threshold if result.pixel_threshold is not None else result.threshold
    if not np.isfinite(value) or value <= 0:
        raise InspectorError(f"cannot draw a heatmap: threshold {value!r} is not a positive number")
    return float(value)


def heatmap_image(result: InspectionResult) -> np.ndarray:
    """The anomaly map as BGR colours on the fixed scale (0 blue, pixel threshold red), with what is
    not inspected outlined (the dashboard shows this picture blended over the board)."""
    scaled = np.clip(result.anomaly_map.astype(np.float32) * (255.0 / red_at(result)), 0, 255)
    return _outline_inspection_area(cv2.applyColorMap(scaled.astype(np.uint8), COLORMAP), result)


def _outline_inspection_area(canvas: np.ndarray, result: InspectionResult) -> np.ndarray:
    """The inspection area outlined in white, holes included: outside a QA-drawn area, and the
    surround (a clamp, a glare) inside it, are not inspected."""
    area = getattr(result, "inspection_area", None)
    if area is not None and area.shape == canvas.shape[:2]:
        contours, _ = cv2.findContours((area > 127).astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, (255, 255, 255), 1)
    return canvas


def as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    return image


def reconstruction_image(result: InspectionResult) -> np.ndarray:
    """The model's reconstruction as BGR (what the board "should" look like)."""
    if result.reconstruction is None:
        raise InspectorError("this result carries no reconstruction (set inspect.save_reconstruction)")
    return as_bgr(result.reconstruction)


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


def overlay(image: np.ndarray, result: InspectionResult, *, opacity: float = 0.5) -> np.ndarray:
    """BGR picture for operators: image + fixed-scale heatmap, region boxes with scores, legend."""
    if not 0.0 <= opacity <= 1.0:
        raise InspectorError(f"overlay opacity must be within [0, 1], got {opacity}")
    base = as_bgr(image)
    if base.shape[:2] != result.anomaly_map.shape:
        raise InspectorError(
            f"image {base.shape[1]}x{base.shape[0]} and anomaly map "
            f"{result.anomaly_map.shape[1]}x{result.anomaly_map.shape[0]} differ in size"
        )
    canvas = cv2.addWeighted(base, 1.0 - opacity, heatmap_image(result), opacity, 0.0)
    scale = max(0.35, min(1.0, min(canvas.shape[:2]) / 800))
    thickness = max(1, int(round(scale * 2)))
    _outline_inspection_area(canvas, result)
    for region in result.regions:
        x1, y1, x2, y2 = region.bbox
        cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), BOX_COLOUR, thickness)
        _label(canvas, f"{region.score:.2f}", (x1, y1 - 3), scale * 0.8)
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
