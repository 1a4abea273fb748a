"""Board pictures for the detail page: stored image blended with its heatmap, regions drawn.

Everything is re-rendered from the files the runner stored, so the opacity slider needs no
second copy of each overlay. Arrays are OpenCV BGR until `to_rgb` for display.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.core.imageio import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

REGION_COLOUR = (0, 0, 255)  # red in BGR: visible on both green boards and the blue end of JET


THUMBNAIL_WIDTH = 240
HEATMAP_SUFFIX = ".heatmap.png"
RECONSTRUCTION_SUFFIX = ".reconstruction.png"


def reconstruction_beside(heatmap_path: Path) -> Path | None:
    """The runner writes `<stem>.reconstruction.png` beside `<stem>.heatmap.png` when
    inspect.save_reconstruction is on; the store has no column for it."""
    if not heatmap_path.name.endswith(HEATMAP_SUFFIX):
        return None
    candidate = heatmap_path.with_name(heatmap_path.name[: -len(HEATMAP_SUFFIX)] + RECONSTRUCTION_SUFFIX)
    return candidate if candidate.is_file() else None


class MissingImage(Exception):
    """A stored file is gone or unreadable; the message names it (shown to the operator)."""


def read_colour(path: str | Path, what: str, root: Path | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A stored picture through the runner's safe loader (format sniffing, pixel cap), and only
    from inside `root` (the store's data folder) when given."""
    if not path:
        raise MissingImage(f"no {what} was stored for this board")
    if root is not None and not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise MissingImage(f"{path}: {what} is outside the data folder; not shown")
    try:
        image = load_image(path, max_pixels=max_pixels)
    except ImageLoadError as exc:
        raise MissingImage(f"{path}: {what} missing or unreadable ({exc.reason})") from exc
    return as_bgr(image)


def thumbnail(image: np.ndarray, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    """A small copy for the queue's cards."""
    height = max(1, round(image.shape[0] * width / max(1, image.shape[1])))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def as_bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def heatmap_colour(heatmap: np.ndarray) -> np.ndarray:
    """A colour heatmap as-is; a single-channel one through the JET colour map."""
    if heatmap.ndim == 3 and heatmap.shape[2] >= 3 and not _is_gray(heatmap):
        return as_bgr(heatmap)
    gray = heatmap if heatmap.ndim == 2 else heatmap[..., 0]
    if gray.dtype != np.uint8:
        gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.applyColorMap(gray, cv2.COLORMAP_JET)


def _is_gray(image: np.ndarray) -> bool:
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def blend(image: np.ndarray, heatmap: np.ndarray, opacity: float) -> np.ndarray:
    """`opacity` 0 shows the board only, 1 the heatmap only."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    base = as_bgr(image)
    colour = heatmap_colour(heatmap)
    if colour.shape[:2] != base.shape[:2]:
        colour = cv2.resize(colour, (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(base, 1.0 - opacity, colour, opacity, 0.0)


def draw_regions(image: np.ndarray, regions: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Numbered boxes matching the rows of the regions table (1-based)."""
    canvas = as_bgr(image).copy()
    thickness = max(1, round(min(canvas.shape[:2]) / 200))
    for number, region in enumerate(regions, start=1):
        x1, y1, x2, y2 = (int(v) for v in region["bbox"])
        cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), REGION_COLOUR, thickness)
        cv2.putText(canvas, str(number), (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * thickness + 0.05, REGION_COLOUR, thickness, cv2.LINE_AA)
    return canvas


def to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(as_bgr(image), cv2.COLOR_BGR2RGB)
