"""Image files -> pixels, or one clear `ImageLoadError`; never OpenCV's silent `None`.

Every image the product touches (training folders, `inspect`, the folder runner, evaluation) goes
through `load_image` / `decode_image`, so the checks live in one place:

* the bytes are read once and the format is recognised by its magic bytes (PNG, JPEG, BMP,
  TIFF, WebP); anything else is refused, whatever its file name says;
* every size the header claims is read *before* decoding, the way the decoder will read it
  (`inspector.core.imageheaders`: PNG chunks, every JPEG frame header, BMP core and V1-V5 headers,
  the first directory of a classic TIFF with its strips or tiles, WebP VP8/VP8L/VP8X), and each is
  held to `max_pixels`, so a "decompression bomb" claiming 100000x100000 pixels, or a header the
  decoder would read otherwise (a TIFF size tag given twice), is refused without allocating;
  BigTIFF and animations are refused;
* truncated data is refused (PNG without IEND, JPEG without EOI, or a decoder failure).

Conversions (explicit, so a camera's odd format never changes the pixels silently):

* grayscale stays grayscale (HxW); colour is BGR (HxWx3), OpenCV order;
* RGBA/BGRA -> BGR by **dropping alpha** (boards are opaque; compositing would darken pixels);
* gray+alpha (2 channels) -> gray by dropping alpha;
* 16-bit samples -> 8-bit by keeping the high byte (`>> 8`); float or signed samples are refused;
* `channels=1` / `channels=3` convert to gray / BGR after that; `None` keeps what the file has.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.core.imageheaders import SizeClaim, UnsupportedImage, header_claims
from inspector.errors import ConfigError, ImageLoadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_MAX_PIXELS = 40_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_TRAILER_WINDOW = 4096  # cameras sometimes append a few bytes after the end marker


def is_image_file(path: Path) -> bool:
    """True for a regular file whose extension is one of IMAGE_EXTENSIONS."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading magic bytes, or None if it is not one we read."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _png_is_gray(head: bytes) -> bool:
    # IHDR colour type (byte 25): 0 = gray, 4 = gray + alpha.
    return head.startswith(_PNG_MAGIC) and len(head) > 25 and head[25] in (0, 4)


def _check_complete(data: bytes, fmt: str) -> None:
    tail = data[-_TRAILER_WINDOW:]
    if fmt == "png" and b"IEND" not in tail:
        raise ValueError("truncated PNG (no IEND chunk at the end)")
    # Byte stuffing guarantees FF D9 appears in the entropy-coded data only as the EOI marker.
    if fmt == "jpeg" and b"\xff\xd9" not in tail:
        raise ValueError("truncated JPEG (no end-of-image marker)")


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    raise ValueError(f"unsupported sample type {pixels.dtype} (only 8- and 16-bit unsigned images)")


def _normalise_channels(pixels: np.ndarray) -> np.ndarray:
    """-> HxW gray or HxWx3 BGR, dropping any alpha channel."""
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim != 3:
        raise ValueError(f"unsupported image shape {pixels.shape}")
    count = pixels.shape[2]
    if count == 1:
        return pixels[:, :, 0]
    if count == 2:  # gray + alpha
        return np.ascontiguousarray(pixels[:, :, 0])
    if count == 3:
        return pixels
    if count == 4:  # BGRA: alpha dropped, see module docstring
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"unsupported channel count {count}")


def _convert(pixels: np.ndarray, channels: int | None) -> np.ndarray:
    if channels is None:
        return pixels
    if channels == 1:
        return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR) if pixels.ndim == 2 else pixels


class DecodeOutOfMemory(ImageLoadError):
    """The decoder could not allocate what this image needs (a decode guard's memory cap, or the machine's)."""


def decode_image(
    data: bytes | bytearray | memoryview | np.ndarray,
    name: str | Path = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    channels: int | None = None,
) -> np.ndarray:
    """Encoded image bytes -> uint8 HxW (gray) or HxWx3 (BGR); `ImageLoadError(name, reason)` otherwise.

    `name` only labels errors (a path, a camera id). See the module docstring for conversions.
    """
    if channels not in (None, 1, 3):
        raise ImageLoadError(name, f"cannot convert to {channels} channels (use 1 or 3)")
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else _flat_bytes(data)
    if buffer.size == 0:
        raise ImageLoadError(name, "file is empty (0 bytes)")
    fmt = _checked_header(buffer, name, max_pixels)
    pixels = _opencv_decode(buffer, name, fmt)
    if pixels.ndim == 3 and _png_is_gray(buffer[:64].tobytes()):
        # OpenCV expands gray+alpha (and gray with a transparency chunk) PNGs to BGRA.
        pixels = np.ascontiguousarray(pixels[:, :, 0])
    try:
        _check_claim(SizeClaim("image", pixels.shape[1], pixels.shape[0]), max_pixels)
        pixels = _normalise_channels(_to_uint8(pixels))
    except _TooLarge as exc:
        raise ImageLoadError(name, str(exc)) from exc
    except ValueError as exc:
        raise ImageLoadError(name, str(exc)) from exc
    return np.ascontiguousarray(_convert(pixels, channels))


def _flat_bytes(array: np.ndarray) -> np.ndarray:
    # The header readers index bytes: a strided or wider-typed array is made plain uint8 first.
    return np.ascontiguousarray(array.reshape(-1)).view(np.uint8)


def _checked_header(buffer: np.ndarray, name: str | Path, max_pixels: int) -> str:
    """The format of `buffer`, once its completeness and every size its header claims are checked."""
    fmt = sniff_format(buffer[:64].tobytes())
    if fmt is None:
        raise ImageLoadError(name, "unsupported or unrecognised image format (expected PNG, JPEG, BMP, TIFF or WebP)")
    try:
        # Completeness first: a file cut short reads as truncated, not as a chunk running past its end.
        _check_complete(buffer[-_TRAILER_WINDOW:].tobytes(), fmt)
        for claim in header_claims(fmt, buffer.data):
            _check_claim(claim, max_pixels)
    except UnsupportedImage as exc:
        raise ImageLoadError(name, f"unsupported {fmt.upper()}: {exc}") from exc
    except ValueError as exc:
        raise ImageLoadError(name, f"corrupt {fmt.upper()} data: {exc}") from exc
    except _TooLarge as exc:
        raise ImageLoadError(name, str(exc)) from exc
    return fmt


def _opencv_decode(buffer: np.ndarray, name: str | Path, fmt: str) -> np.ndarray:
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if exc.code == cv2.Error.StsNoMem:
            raise DecodeOutOfMemory(name, f"decoding needs more memory than it may have ({exc.err})") from exc
        raise ImageLoadError(name, f"corrupt {fmt.upper()} data: OpenCV could not decode it ({exc.msg.strip()})") from exc
    if pixels is None or pixels.size == 0:
        raise ImageLoadError(name, f"corrupt or truncated {fmt.upper()} data: OpenCV could not decode it")
    return pixels


class _TooLarge(Exception):
    pass


def _check_claim(claim: SizeClaim, max_pixels: int) -> None:
    width, height = claim.width, claim.height
    if width <= 0 or height <= 0:
        raise ValueError(f"header claims an empty {claim.what} ({width}x{height})")
    if width * height <= max_pixels:
        return
    if claim.what == "image":
        raise _TooLarge(f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
                        "(raise inspect.max_pixels if this is a real image)")
    raise _TooLarge(f"{claim.what}s of {width}x{height} = {width * height} pixels are over the limit of {max_pixels} "
                    "(the decoder allocates one whole; raise inspect.max_pixels if this is a real image)")


def load_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, channels: int | None = None
) -> np.ndarray:
    """Read an image file -> uint8 HxW (gray) or HxWx3 (BGR), or raise `ImageLoadError(path, reason)`."""
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(path, "file not found")
    if path.is_dir():
        raise ImageLoadError(path, "is a directory, not an image file")
    try:
        # Read once; every check below sees exactly the bytes that get decoded.
        data = np.fromfile(path, dtype=np.uint8)
    except PermissionError as exc:
        raise ImageLoadError(path, "permission denied") from exc
    except OSError as exc:
        raise ImageLoadError(path, f"cannot read ({exc.strerror or exc})") from exc
    return decode_image(data, path, max_pixels=max_pixels, channels=channels)


def good_image_paths(data: str | Path, mvtec_subdir: str) -> list[Path]:
    """Images of a plain folder, or of `mvtec_subdir` (train/good, test/good) in an MVTec-AD root."""
    root = Path(data)
    folder = root / mvtec_subdir if (root / mvtec_subdir).is_dir() else root
    if not folder.is_dir():
        raise ConfigError(f"{folder}: image folder not found")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ConfigError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    return paths
