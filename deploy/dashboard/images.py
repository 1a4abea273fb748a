"""Board pictures for the dashboard, re-rendered from the files the runner stored.

Arrays are OpenCV BGR (heatmap layers BGRA) until `to_rgb` for display. The heatmap is drawn only
where the map matters (inspector/core/render.py): new heatmap files carry that as their alpha;
older ones (a JET picture of the whole map, or a gray map) are read back onto the same fixed scale
and get the same rule, so a board stored before this change shows the same way.

Region zooms are built here from the stored board, heatmap and, for fixtured designs, the
reference board the runner stores beside the heatmap (`<stem>.reference.png`): rows stored before
it existed still get the board and heatmap panels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.core import render
from inspector.core.imageio import DEFAULT_MAX_PIXELS, ImageLoadError, load_image

REGION_COLOUR = render.BOX_COLOUR  # magenta on a dark halo: seen on green boards and on every heatmap colour
THUMBNAIL_WIDTH = 240
HEATMAP_SUFFIX = ".heatmap.png"
RECONSTRUCTION_SUFFIX = ".reconstruction.png"
REFERENCE_SUFFIX = ".reference.png"
# An old JET heatmap's pixel further than this (sum over B, G, R) from every JET colour is no map
# value (the white outline of what is not inspected): it is kept as drawn.
OFF_SCALE_DISTANCE = 24
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_RGBA = 6  # IHDR colour type of an 8-bit RGBA PNG (what render.heatmap_image writes)

Box = render.Box


def file_beside(heatmap_path: Path, suffix: str) -> Path | None:
    """The runner writes `<stem><suffix>` beside `<stem>.heatmap.png` (the store has no column for
    it); None when there is no such file."""
    if not heatmap_path.name.endswith(HEATMAP_SUFFIX):
        return None
    candidate = heatmap_path.with_name(heatmap_path.name[: -len(HEATMAP_SUFFIX)] + suffix)
    return candidate if candidate.is_file() else None


def reconstruction_beside(heatmap_path: Path) -> Path | None:
    """`<stem>.reconstruction.png`, written when inspect.save_reconstruction is on."""
    return file_beside(heatmap_path, RECONSTRUCTION_SUFFIX)


def reference_beside(heatmap_path: Path) -> Path | None:
    """`<stem>.reference.png`: the reference board where this board lay, written for flagged boards
    of fixtured designs."""
    return file_beside(heatmap_path, REFERENCE_SUFFIX)


class MissingImage(Exception):
    """A stored file is gone or unreadable; the message names it (shown to the operator)."""


def _load(path: str | Path, what: str, root: Path | None, max_pixels: int) -> np.ndarray:
    """A stored picture (gray or BGR) through the runner's safe loader (format sniffing, pixel cap),
    and only from inside `root` (the store's data folder) when given."""
    if not path:
        raise MissingImage(f"no {what} was stored for this board")
    if root is not None and not Path(path).resolve().is_relative_to(Path(root).resolve()):
        raise MissingImage(f"{path}: {what} is outside the data folder; not shown")
    try:
        return load_image(path, max_pixels=max_pixels)
    except ImageLoadError as exc:
        raise MissingImage(f"{path}: {what} missing or unreadable ({exc.reason})") from exc


def read_colour(path: str | Path, what: str, root: Path | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A stored picture as BGR (see `_load`)."""
    return as_bgr(_load(path, what, root, max_pixels))


def read_heatmap(path: str | Path, root: Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A stored heatmap as a BGRA layer, opaque only where the map matters (`heatmap_layer`). The
    safe loader checks the file and drops alpha; a BGRA PNG's alpha is then read from its bytes."""
    pixels = _load(path, "heatmap", root, max_pixels)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MissingImage(f"{path}: heatmap missing or unreadable ({exc.strerror or exc})") from exc
    head = data[:26].tobytes()
    if head.startswith(_PNG_MAGIC) and len(head) > 25 and head[25] == _PNG_RGBA:
        with_alpha = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if with_alpha is not None and with_alpha.shape[:2] == pixels.shape[:2] and with_alpha.ndim == 3 \
                and with_alpha.shape[2] == 4:
            return with_alpha
    return heatmap_layer(pixels)


@lru_cache(maxsize=1)
def _jet_table() -> np.ndarray:
    """The JET colour of each level 0..255, BGR int32 (256x3)."""
    levels = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return cv2.applyColorMap(levels, render.COLORMAP).reshape(256, 3).astype(np.int32)


def _levels_of_jet(colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An old heatmap picture (JET colours on the fixed scale) read back to levels 0..255, and where
    a pixel is no JET colour at all (an outline): the nearest colour of the table, per distinct colour."""
    packed = (colour[..., 0].astype(np.int32) << 16) | (colour[..., 1].astype(np.int32) << 8) | colour[..., 2]
    distinct, inverse = np.unique(packed.reshape(-1), return_inverse=True)
    bgr = np.stack([(distinct >> 16) & 255, (distinct >> 8) & 255, distinct & 255], axis=1)
    distance = np.abs(bgr[:, None, :] - _jet_table()[None, :, :]).sum(axis=2)
    nearest = distance.argmin(axis=1)
    levels = nearest.astype(np.uint8)[inverse].reshape(packed.shape)
    off_scale = (distance.min(axis=1) > OFF_SCALE_DISTANCE)[inverse].reshape(packed.shape)
    return levels, off_scale


def heatmap_layer(heatmap: np.ndarray) -> np.ndarray:
    """Any stored heatmap as a BGRA layer on the fixed scale, opaque only where the map matters:
    BGRA as written; gray = levels (255 = the pixel threshold); a colour picture = old JET heatmap."""
    if heatmap.ndim == 3 and heatmap.shape[2] == 4:
        return heatmap
    if heatmap.dtype != np.uint8:
        raise ValueError(f"a heatmap must be 8-bit, got {heatmap.dtype}")
    if heatmap.ndim == 2 or heatmap.shape[2] == 1 or _is_gray(heatmap):
        gray = heatmap if heatmap.ndim == 2 else heatmap[..., 0]
        return render.layer_of_levels(np.ascontiguousarray(gray))
    colour = heatmap[..., :3]
    levels, off_scale = _levels_of_jet(colour)
    layer = render.layer_of_levels(levels)
    layer[off_scale, :3] = colour[off_scale]
    layer[off_scale, 3] = 255
    return layer


def _is_gray(image: np.ndarray) -> bool:
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def fitted(picture: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A picture stored at another size than the board, scaled onto the board's HxW."""
    if picture.shape[:2] == tuple(shape[:2]):
        return picture
    return cv2.resize(picture, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def same_proportions(picture: np.ndarray, shape: tuple[int, ...], tolerance: float = 0.01) -> bool:
    height, width = picture.shape[:2]
    return abs(width / height - shape[1] / shape[0]) <= tolerance * shape[1] / shape[0]


def thumbnail(image: np.ndarray, width: int = THUMBNAIL_WIDTH) -> np.ndarray:
    """A small copy for the queue's cards."""
    height = max(1, round(image.shape[0] * width / max(1, image.shape[1])))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def as_bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return render.as_bgr(image)


def blend(image: np.ndarray, heatmap: np.ndarray, opacity: float) -> np.ndarray:
    """The heatmap laid over the board where the map matters: `opacity` 0 shows the board only, 1
    the heatmap as drawn (the board's own pixels wherever the map is low)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    base = as_bgr(image)
    return render.compose(base, fitted(heatmap_layer(heatmap), base.shape), opacity)


def boxes_of(regions: Iterable[Mapping[str, Any]]) -> list[Box]:
    return [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in (region["bbox"] for region in regions)]


def draw_regions(image: np.ndarray, regions: Iterable[Mapping[str, Any]], *, scale: float = 1.0) -> np.ndarray:
    """Each region outlined and numbered like the rows of the regions table (1-based), on a picture
    shown `scale` times the board's size (outlines are drawn at the size they are seen)."""
    canvas = as_bgr(image).copy()
    boxes = [_scaled(box, scale) for box in boxes_of(regions)]
    return render.outline_regions(canvas, boxes)


def _scaled(box: Box, scale: float) -> Box:
    x1, y1, x2, y2 = box
    return round(x1 * scale), round(y1 * scale), max(round(x2 * scale), round(x1 * scale) + 1), \
        max(round(y2 * scale), round(y1 * scale) + 1)


def board_picture(board: np.ndarray, layer: np.ndarray | None, regions: Sequence[Mapping[str, Any]], *,
                  opacity: float, width: int | None = None) -> np.ndarray:
    """The whole board (BGR): the heatmap where it matters at `opacity`, shrunk to `width` when given,
    then every region outlined and numbered at that size."""
    picture = as_bgr(board)
    if layer is not None and opacity > 0:
        picture = render.compose(picture, fitted(layer, picture.shape), opacity)
    scale = 1.0
    if width is not None and width < picture.shape[1]:
        scale = width / picture.shape[1]
        picture = thumbnail(picture, width)
    return draw_regions(picture, regions, scale=scale)


@dataclass(frozen=True)
class Zoom:
    """One region's zoom as shown: its panels side by side (RGB) and what they are."""

    number: int  # the region's number (outlines, table)
    peak: float
    area: int | None
    panels: tuple[str, ...]  # e.g. ("board", "reference", "heatmap")
    picture: np.ndarray  # RGB

    @property
    def caption(self) -> str:
        area = "" if self.area is None else f" · {self.area} px"
        return f"Region {self.number} · peak {self.peak:.2f}{area}"


def region_zooms(board: np.ndarray, layer: np.ndarray | None, reference: np.ndarray | None,
                 regions: Sequence[Mapping[str, Any]], *, limit: int = render.ZOOM_LIMIT,
                 side: int = render.ZOOM_SIDE) -> tuple[list[Zoom], int]:
    """Zooms of the stored regions, largest peak first (at most `limit`), and how many are left out.
    A heatmap or reference stored at another size is scaled onto the board first (the caller drops a
    reference of other proportions: `same_proportions`)."""
    board = as_bgr(board)
    layer = None if layer is None else fitted(layer, board.shape)
    reference = None if reference is None else fitted(as_bgr(reference), board.shape)
    pairs = [(box, float(region.get("peak", region.get("score", 0.0)) or 0.0))
             for box, region in zip(boxes_of(regions), regions, strict=True)]
    zooms, left_out = render.region_zooms(board, layer, pairs, reference, limit=limit, side=side)
    shown = []
    for zoom in zooms:
        area = regions[zoom.number - 1].get("area")
        shown.append(Zoom(zoom.number, zoom.peak, None if area is None else int(area),
                          tuple(name for name, _ in zoom.panels()), to_rgb(zoom.strip())))
    return shown, left_out


def to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(as_bgr(image), cv2.COLOR_BGR2RGB)
