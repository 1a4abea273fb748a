"""Board pictures for the dashboard, re-rendered from the files the runner stored.

Arrays are OpenCV BGR (heatmap layers BGRA) until `to_rgb` for display. The heatmap is drawn only
where the map matters (inspector/core/render.py): new heatmap files carry that as their alpha;
older ones (a JET picture of the whole map, or a gray map) are read back onto the same fixed scale
and get the same rule, so a board stored before this change shows the same way.

Region zooms are built here from the stored board, heatmap and, for fixtured designs, the
reference board the runner stores beside the heatmap (`<stem>.reference.png`): rows stored before
it existed still get the board and heatmap panels.

Stored paths come from the store, so they are read only from the dashboard's data folder and the
stations' data folders the store records (`use_station_folders`), each through one descriptor whose
file is checked where it really is (`_read_stored`): never outside them, symlinks included.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config import RunnerConfig
from inspector.core import drawing, region_zoom, render
from inspector.core.imageio import DEFAULT_MAX_PIXELS, ImageLoadError, decode_image

REGION_COLOUR = drawing.BOX_COLOUR  # magenta on a dark halo: seen on green boards and on every heatmap colour
THUMBNAIL_WIDTH = 240
HEATMAP_SUFFIX = ".heatmap.png"
RECONSTRUCTION_SUFFIX = ".reconstruction.png"
REFERENCE_SUFFIX = ".reference.png"
# An old JET heatmap's pixel further than this (sum over B, G, R) from every JET colour is no map
# value (the white outline of what is not inspected): it is kept as drawn.
OFF_SCALE_DISTANCE = 24
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_RGBA = 6  # IHDR colour type of an 8-bit RGBA PNG (what render.heatmap_image writes)

Box = drawing.Box


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


# ---------------------------------------------------------------------- where pictures may come from
# Each feed keeps its pictures in its own data directory, which the store records per station
# (inspector/store/stations.py). The pages pass the dashboard's data directory as `root`; the store
# it opened registers here how to list its stations' directories (context.store), so a picture in
# any of them is shown and one anywhere else is not.
StationFolders = Callable[[], Iterable[str]]
_STATION_FOLDERS: dict[str, StationFolders] = {}
_STATION_FOLDERS_LOCK = threading.Lock()
# The runner quarantines larger inbox files unread (runner.max_file_bytes, default); none is stored.
MAX_FILE_BYTES = RunnerConfig().max_file_bytes
# Non-blocking: a FIFO planted among the pictures must not hang the page at open(); it is then
# refused as not a regular file. No controlling terminal, no descriptor leaked to a child.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def use_station_folders(data_dir: str | Path, folders: StationFolders) -> None:
    """Pictures read with `root=data_dir` may also lie in the folders `folders()` names: the data
    directories the store records for its stations. It is asked only for a picture outside
    `data_dir`, and afresh each time, so a station started a moment ago counts at once."""
    with _STATION_FOLDERS_LOCK:
        _STATION_FOLDERS[os.path.realpath(data_dir)] = folders


class _Roots:
    """The folders a picture may be read from: the data directory, then (asked once, only when
    needed) the stations' data directories. Every comparison is of real paths (symlinks resolved)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = os.path.realpath(data_dir)
        self._stations: list[str] | None = None

    def contain(self, real_path: str) -> bool:
        if _inside(real_path, self.data_dir):
            return True
        return any(_inside(real_path, folder) for folder in self._station_folders())

    def _station_folders(self) -> list[str]:
        if self._stations is None:
            with _STATION_FOLDERS_LOCK:
                lookup = _STATION_FOLDERS.get(self.data_dir)
            folders = [] if lookup is None else [str(folder) for folder in lookup()]
            # A feed records its directory resolved; anything else (an empty field of a station from
            # before schema 7, a relative path, the file system's root) is no image folder.
            real = (os.path.realpath(folder) for folder in folders if folder and os.path.isabs(folder))
            self._stations = [folder for folder in real if os.path.dirname(folder) != folder]
        return self._stations


def _inside(real_path: str, folder: str) -> bool:
    return Path(real_path).is_relative_to(folder)


def _opened_path(fd: int, path: str) -> str | None:
    """The real path of the file open on `fd`: Linux names it in /proc/self/fd. Elsewhere the real
    path of `path`, trusted only when it is the very file open on `fd` (same device and inode), so
    a name changed after the open is refused, never followed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
    real = os.path.realpath(path)
    try:
        named, opened = os.stat(real), os.fstat(fd)
    except OSError:
        return None
    return real if (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino) else None


def _unreadable(path: str | Path, what: str, reason: str) -> MissingImage:
    return MissingImage(f"{path}: {what} missing or unreadable ({reason})")


def _read_stored(path: str | Path, what: str, root: Path | None) -> bytes:
    """A stored file's bytes, read through one descriptor, and only from inside `root` (the
    dashboard's data folder) or a station's data folder when `root` is given.

    The check is made on the file actually opened (its real path, from the descriptor), not on the
    name: a name swapped for a symlink between a check and the open cannot lead the read outside,
    and the bytes decoded are the bytes checked. The name is also checked before the open, so a
    stored path naming a device or anything else outside is never opened at all.
    """
    if not path:
        raise MissingImage(f"no {what} was stored for this board")
    roots = None if root is None else _Roots(root)
    outside = MissingImage(f"{path}: {what} is outside the data folder; not shown")
    if roots is not None and not roots.contain(os.path.realpath(path)):
        raise outside
    fd = _open_stored(path, what)
    try:
        if roots is not None:
            opened = _opened_path(fd, str(path))
            if opened is None or not roots.contain(opened):
                raise outside
        _check_regular(fd, path, what)
        return _read_capped(fd, path, what)
    except OSError as exc:
        raise _unreadable(path, what, f"cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def _open_stored(path: str | Path, what: str) -> int:
    """A descriptor on `path` (`_OPEN_FLAGS`); why not, in the operator's words, when it cannot be opened."""
    try:
        return os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise _unreadable(path, what, "file not found") from exc
    except PermissionError as exc:
        raise _unreadable(path, what, "permission denied") from exc
    except OSError as exc:
        raise _unreadable(path, what, f"cannot read ({exc.strerror or exc})") from exc


def _check_regular(fd: int, path: str | Path, what: str) -> None:
    """The file open on `fd` is a regular file within MAX_FILE_BYTES (a directory, FIFO or device is
    refused before any read)."""
    status = os.fstat(fd)
    if stat.S_ISDIR(status.st_mode):
        raise _unreadable(path, what, "is a directory, not an image file")
    if not stat.S_ISREG(status.st_mode):
        raise _unreadable(path, what, "not a regular file")
    if status.st_size > MAX_FILE_BYTES:  # refused unread; `_read_capped` holds a file still growing to it
        raise _unreadable(path, what, f"over {MAX_FILE_BYTES} bytes")


def _read_capped(fd: int, path: str | Path, what: str) -> bytes:
    """All of the file open on `fd`, refused once it passes MAX_FILE_BYTES."""
    chunks, size = [], 0
    while chunk := os.read(fd, 1 << 20):
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise _unreadable(path, what, f"over {MAX_FILE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decoded(data: bytes, path: str | Path, what: str, max_pixels: int) -> np.ndarray:
    """Stored bytes -> pixels (gray or BGR) through the runner's safe decoder (format sniffing,
    pixel cap)."""
    try:
        return decode_image(data, path, max_pixels=max_pixels)
    except ImageLoadError as exc:
        raise _unreadable(path, what, exc.reason) from exc


def _load(path: str | Path, what: str, root: Path | None, max_pixels: int) -> np.ndarray:
    """A stored picture (gray or BGR), read once (`_read_stored`) and decoded from those bytes."""
    return _decoded(_read_stored(path, what, root), path, what, max_pixels)


def read_colour(path: str | Path, what: str, root: Path | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A stored picture as BGR (see `_read_stored` for where it may come from)."""
    return as_bgr(_load(path, what, root, max_pixels))


def read_heatmap(path: str | Path, root: Path | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A stored heatmap as a BGRA layer, opaque only where the map matters (`heatmap_layer`). The
    safe decoder checks the bytes and drops alpha; a BGRA PNG's alpha is then read from the same
    bytes (never from the file again)."""
    data = _read_stored(path, "heatmap", root)
    pixels = _decoded(data, path, "heatmap", max_pixels)
    head = data[:26]
    if head.startswith(_PNG_MAGIC) and len(head) > 25 and head[25] == _PNG_RGBA:
        with_alpha = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
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
    return drawing.as_bgr(image)


def blend(image: np.ndarray, heatmap: np.ndarray, opacity: float) -> np.ndarray:
    """The heatmap laid over the board where the map matters: `opacity` 0 shows the board only, 1
    the heatmap as drawn (the board's own pixels wherever the map is low)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within 0..1, got {opacity}")
    base = as_bgr(image)
    return drawing.compose(base, fitted(heatmap_layer(heatmap), base.shape), opacity)


def boxes_of(regions: Iterable[Mapping[str, Any]]) -> list[Box]:
    return [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in (region["bbox"] for region in regions)]


def draw_regions(image: np.ndarray, regions: Iterable[Mapping[str, Any]], *, scale: float = 1.0) -> np.ndarray:
    """Each region outlined and numbered like the rows of the regions table (1-based), on a picture
    shown `scale` times the board's size (outlines are drawn at the size they are seen)."""
    canvas = as_bgr(image).copy()
    boxes = [_scaled(box, scale) for box in boxes_of(regions)]
    return drawing.outline_regions(canvas, boxes)


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
        picture = drawing.compose(picture, fitted(layer, picture.shape), opacity)
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
                 regions: Sequence[Mapping[str, Any]], *, limit: int = region_zoom.ZOOM_LIMIT,
                 side: int = region_zoom.ZOOM_SIDE) -> tuple[list[Zoom], int]:
    """Zooms of the stored regions, largest peak first (at most `limit`), and how many are left out.
    A heatmap or reference stored at another size is scaled onto the board first (the caller drops a
    reference of other proportions: `same_proportions`)."""
    board = as_bgr(board)
    layer = None if layer is None else fitted(layer, board.shape)
    reference = None if reference is None else fitted(as_bgr(reference), board.shape)
    pairs = [(box, float(region.get("peak", region.get("score", 0.0)) or 0.0))
             for box, region in zip(boxes_of(regions), regions, strict=True)]
    zooms, left_out = region_zoom.region_zooms(board, layer, pairs, reference, limit=limit, side=side)
    shown = []
    for zoom in zooms:
        area = regions[zoom.number - 1].get("area")
        shown.append(Zoom(zoom.number, zoom.peak, None if area is None else int(area),
                          tuple(name for name, _ in zoom.panels()), to_rgb(zoom.strip())))
    return shown, left_out


def to_rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(as_bgr(image), cv2.COLOR_BGR2RGB)
