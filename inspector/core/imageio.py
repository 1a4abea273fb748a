"""Image files -> pixels, or one clear `ImageLoadError`; never OpenCV's silent `None`.

Every image the product touches (training folders, `inspect`, the folder runner, evaluation) goes
through `load_image` / `decode_image`, so the checks live in one place:

* the bytes are read once and the format is recognised by its magic bytes (PNG, JPEG, BMP,
  TIFF, WebP); anything else is refused, whatever its file name says;
* the pixel count is read from the header *before* decoding for every accepted format (PNG,
  JPEG, BMP, the first page of a classic TIFF, WebP VP8/VP8L/VP8X), so a "decompression bomb"
  claiming 100000x100000 pixels is refused without allocating; BigTIFF is refused (no header
  check);
* truncated data is refused (PNG without IEND, JPEG without EOI, or a decoder failure).

Conversions (explicit, so a camera's odd format never changes the pixels silently):

* grayscale stays grayscale (HxW); colour is BGR (HxWx3), OpenCV order;
* RGBA/BGRA -> BGR by **dropping alpha** (boards are opaque; compositing would darken pixels);
* gray+alpha (2 channels) -> gray by dropping alpha;
* 16-bit samples -> 8-bit by keeping the high byte (`>> 8`); float or signed samples are refused;
* `channels=1` / `channels=3` convert to gray / BGR after that; `None` keeps what the file has.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

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


def _png_size(data: bytes) -> tuple[int, int]:
    # The first chunk must be IHDR: length(4) type(4) width(4) height(4), big-endian.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("PNG header has no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _png_is_gray(head: bytes) -> bool:
    # IHDR colour type (byte 25): 0 = gray, 4 = gray + alpha.
    return head.startswith(_PNG_MAGIC) and len(head) > 25 and head[25] in (0, 4)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC).
    offset = 2
    while offset + 4 <= len(data):
        if data[offset] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {offset}")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            offset += 2
            continue
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if offset + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        offset += 2 + length
    raise ValueError("JPEG has no frame header (SOF)")


def _bmp_size(data: bytes) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<hh", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # negative height = top-down rows


def _tiff_size(data: bytes) -> tuple[int, int]:
    # Classic TIFF: byte order, 42, offset of IFD0; each entry is tag(2) type(2) count(4) value(4).
    if data[2:4] in (b"+\x00", b"\x00+"):
        raise ValueError("BigTIFF is not accepted (its size cannot be checked before decoding)")
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8:
        raise ValueError("TIFF header is cut short")
    (ifd,) = struct.unpack(order + "I", data[4:8])
    if ifd < 8 or ifd + 2 > len(data):
        raise ValueError("TIFF first directory lies outside the file")
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    found: dict[int, int] = {}
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(data):
            raise ValueError("TIFF first directory is cut short")
        tag, kind = struct.unpack(order + "HH", data[entry:entry + 4])
        if tag in (256, 257):
            if kind == 3:  # SHORT, left-justified in the value field
                (value,) = struct.unpack(order + "H", data[entry + 8:entry + 10])
            elif kind == 4:  # LONG
                (value,) = struct.unpack(order + "I", data[entry + 8:entry + 12])
            else:
                raise ValueError(f"TIFF image size tag {tag} has type {kind}")
            found[tag] = value
    if 256 not in found or 257 not in found:
        raise ValueError("TIFF first directory has no image width or length")
    return found[256], found[257]


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    body = data[20:]
    if chunk == b"VP8X" and len(body) >= 10:  # canvas size, 24 bits each, minus one
        width = 1 + int.from_bytes(body[4:7], "little")
        height = 1 + int.from_bytes(body[7:10], "little")
        return width, height
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    raise ValueError(f"WebP has no readable frame header (chunk {chunk!r})")


_HEADER_SIZE = {"png": _png_size, "jpeg": _jpeg_size, "bmp": _bmp_size, "tiff": _tiff_size, "webp": _webp_size}


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
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buffer.size == 0:
        raise ImageLoadError(name, "file is empty (0 bytes)")
    head = buffer[:64].tobytes()
    fmt = sniff_format(head)
    if fmt is None:
        raise ImageLoadError(name, "unsupported or unrecognised image format (expected PNG, JPEG, BMP, TIFF or WebP)")
    try:
        # JPEG frame headers may follow a large EXIF block and a TIFF directory may sit anywhere,
        # so those two get every byte.
        header = buffer.tobytes() if fmt in ("jpeg", "tiff") else head
        width, height = _HEADER_SIZE[fmt](header)
        _check_size(width, height, max_pixels)
        _check_complete(buffer[-_TRAILER_WINDOW:].tobytes(), fmt)
    except ValueError as exc:
        raise ImageLoadError(name, f"corrupt {fmt.upper()} data: {exc}") from exc
    except _TooLarge as exc:
        raise ImageLoadError(name, str(exc)) from exc
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageLoadError(name, f"corrupt {fmt.upper()} data: OpenCV could not decode it ({exc.msg.strip()})") from exc
    if pixels is None or pixels.size == 0:
        raise ImageLoadError(name, f"corrupt or truncated {fmt.upper()} data: OpenCV could not decode it")
    if pixels.ndim == 3 and _png_is_gray(head):
        # OpenCV expands gray+alpha (and gray with a transparency chunk) PNGs to BGRA.
        pixels = np.ascontiguousarray(pixels[:, :, 0])
    try:
        _check_size(pixels.shape[1], pixels.shape[0], max_pixels)
        pixels = _normalise_channels(_to_uint8(pixels))
    except _TooLarge as exc:
        raise ImageLoadError(name, str(exc)) from exc
    except ValueError as exc:
        raise ImageLoadError(name, str(exc)) from exc
    return np.ascontiguousarray(_convert(pixels, channels))


class _TooLarge(Exception):
    pass


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"header claims an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise _TooLarge(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} "
            "(raise inspect.max_pixels if this is a real image)"
        )


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
