"""Every size an image file claims, read the way the decoders behind `cv2.imdecode` read it.

A pixel cap is only as good as the header reading it is checked on: when the check reads one value
and the decoder another, a small file passes as 10x10 and allocates GiBs. So each reader here
follows its decoder, not the specification alone (OpenCV 5.1: libpng 1.6, libjpeg-turbo 3, OpenCV's
own BMP reader, libtiff 4.7, libwebp), and refuses what the decoder would read differently:

* PNG: the first chunk is a 13-byte IHDR (libpng); every chunk's length lies inside the file (OpenCV
  allocates each chunk before the pixels at its declared length, so a 100-byte file claiming a 1 GiB
  chunk allocated 1 GiB); a second IHDR, or APNG animation chunks (OpenCV composes frames from their
  own sizes), are refused;
* JPEG: every marker up to end-of-image, through the entropy-coded data, as libjpeg finds them; more
  than one frame header (SOF) is refused as ambiguous (libjpeg refuses a second one anyway);
* BMP: OpenCV reads the 12-byte core header's sizes as unsigned 16-bit and every header of 36 bytes
  or more (40, 52, 56, 108 = V4, 124 = V5) as signed 32-bit; a negative height is top-down rows of
  that many lines, a width that is not positive or another header size is refused;
* TIFF (classic; BigTIFF is refused): the first directory, the only page `imdecode` reads. libtiff
  keeps the *first* of duplicated tags, so a size tag given twice with different values is refused
  as ambiguous. OpenCV sizes its read buffer from the strips (width x RowsPerStrip, not clipped to
  the image) or tiles, so those are claims too;
* WebP: the VP8X canvas (what OpenCV allocates), which must equal the VP8/VP8L frame inside it as
  libwebp requires; animated WebP is refused.

Readers return `SizeClaim`s (the image first) and raise `HeaderError` (corrupt or ambiguous) or
`UnsupportedImage` (valid, but not a still picture we decode).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

Data = bytes | memoryview


class HeaderError(ValueError):
    """A header the decoder would refuse, or read otherwise than a plain reading would."""


class UnsupportedImage(ValueError):
    """A well-formed file of a kind the product does not decode (BigTIFF, animations)."""


@dataclass(frozen=True)
class SizeClaim:
    """A buffer the decoder sizes from the header: the image itself, or a TIFF strip or tile."""

    what: str  # "image", "TIFF strip", "TIFF tile"
    width: int
    height: int


def header_claims(fmt: str, data: Data) -> list[SizeClaim]:
    """The sizes `data` (a whole file of format `fmt`, see `imageio.sniff_format`) claims, image first."""
    return _READERS[fmt](data)


# ------------------------------------------------------------------------------------------ PNG
_PNG_ANIMATION = (b"acTL", b"fcTL", b"fdAT")
_PNG_MAX_LENGTH = 0x7FFFFFFF  # PNG lengths are 31-bit; libpng refuses more


def _png_claims(data: Data) -> list[SizeClaim]:
    offset, size = 8, None
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        _check_png_chunk(data, offset, length, kind)
        if offset == 8:
            size = struct.unpack_from(">II", data, 16)
        elif kind == b"IHDR":
            raise HeaderError(f"a second IHDR chunk at byte {offset} (libpng reads only the first)")
        if kind == b"IEND":
            break
        offset += 12 + length
    if size is None:
        raise HeaderError("PNG header has no IHDR chunk")
    return [SizeClaim("image", *size)]


def _check_png_chunk(data: Data, offset: int, length: int, kind: bytes) -> None:
    name = kind.decode("latin-1")
    if offset == 8 and (kind != b"IHDR" or length != 13):
        raise HeaderError(f"the first chunk is {name!r} of {length} bytes, not a 13-byte IHDR")
    if length > _PNG_MAX_LENGTH or offset + 12 + length > len(data):
        raise HeaderError(f"chunk {name!r} at byte {offset} claims {length} bytes, past the end of the "
                          f"{len(data)}-byte file (the decoder would allocate them)")
    if kind in _PNG_ANIMATION:
        raise UnsupportedImage(f"animated PNG (APNG chunk {name!r} at byte {offset}): only still pictures are "
                               "inspected")


# ----------------------------------------------------------------------------------------- JPEG
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
# libjpeg's next_marker: an FF followed by a byte that is not 00 (a stuffed FF in scan data), not FF
# (fill) and, here, not a restart marker (RST0-7 carry no size and libjpeg skips them too).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg_claims(data: Data) -> list[SizeClaim]:
    frames: list[tuple[int, int, int]] = []  # (byte, width, height) of each frame header
    offset = 2
    while (found := _JPEG_MARKER.search(data, offset)) is not None:
        offset, marker = found.start(), data[found.start() + 1]
        if marker == 0xD9:  # end of image: a trailer or an MPO's second picture after it is never decoded
            break
        if marker == 0xD8:
            raise HeaderError(f"a second start-of-image marker at byte {offset} (libjpeg refuses it)")
        if marker == 0x01:  # TEM: no length field
            offset += 2
            continue
        if offset + 4 > len(data):
            break
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in _JPEG_SOF:
            frames.append(_jpeg_frame(data, offset, length))
        elif marker == 0xDA and not frames:
            raise HeaderError(f"start of scan at byte {offset} before any frame header (SOF)")
        offset += 2 + max(length, 2)
    return [SizeClaim("image", *_one_frame(frames))]


def _jpeg_frame(data: Data, offset: int, length: int) -> tuple[int, int, int]:
    if length < 8 or offset + 9 > len(data):
        raise HeaderError(f"frame header (SOF) at byte {offset} is cut short")
    height, width = struct.unpack_from(">HH", data, offset + 5)
    return offset, width, height


def _one_frame(frames: list[tuple[int, int, int]]) -> tuple[int, int]:
    if not frames:
        raise HeaderError("JPEG has no frame header (SOF)")
    if len(frames) > 1:
        claims = ", ".join(f"{width}x{height} at byte {offset}" for offset, width, height in frames)
        raise HeaderError(f"{len(frames)} frame headers (SOF) claim {claims}; a picture has one, so the size is "
                          "ambiguous")
    return frames[0][1], frames[0][2]


# ------------------------------------------------------------------------------------------ BMP
def _bmp_claims(data: Data) -> list[SizeClaim]:
    if len(data) < 26:
        raise HeaderError("BMP header is cut short")
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # BITMAPCOREHEADER: OpenCV reads WORDs, so 0xFF00 is 65280 wide, not -256
        width, height = struct.unpack_from("<HH", data, 18)
        return [SizeClaim("image", width, height)]
    if not 36 <= header_size <= 0x7FFFFFFF:
        raise HeaderError(f"BMP header of {header_size} bytes is not one OpenCV reads (12, or 36 and more)")
    width, height = struct.unpack_from("<ii", data, 18)
    if width <= 0:
        raise HeaderError(f"BMP width {width} is not positive")
    return [SizeClaim("image", width, abs(height))]  # a negative height is rows stored top-down


# ----------------------------------------------------------------------------------------- TIFF
_TIFF_TAGS = {256: "ImageWidth", 257: "ImageLength", 278: "RowsPerStrip", 322: "TileWidth", 323: "TileLength"}
_TIFF_WHOLE_IMAGE = (0, 0xFFFFFFFF)  # RowsPerStrip values OpenCV reads as "one strip of the whole image"


def _tiff_claims(data: Data) -> list[SizeClaim]:
    if bytes(data[2:4]) in (b"+\x00", b"\x00+"):
        raise UnsupportedImage("BigTIFF is not accepted (its size cannot be checked before decoding)")
    tags = _tiff_first_directory(data, "<" if bytes(data[:2]) == b"II" else ">")
    if 256 not in tags or 257 not in tags:
        raise HeaderError("TIFF first directory has no image width or length")
    width, height = tags[256], tags[257]
    claims = [SizeClaim("image", width, height)]
    if 322 in tags or 323 in tags:
        return [*claims, _tiff_tile(tags)]
    rows = tags.get(278, 0)
    return [*claims, SizeClaim("TIFF strip", width, height if rows in _TIFF_WHOLE_IMAGE else rows)]


def _tiff_first_directory(data: Data, order: str) -> dict[int, int]:
    """The size tags of the first directory, first occurrence kept (libtiff ignores later duplicates)."""
    if len(data) < 8:
        raise HeaderError("TIFF header is cut short")
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd < 8 or ifd + 2 > len(data):
        raise HeaderError("TIFF first directory lies outside the file")
    (count,) = struct.unpack_from(order + "H", data, ifd)
    if ifd + 2 + 12 * count > len(data):
        raise HeaderError("TIFF first directory is cut short")
    tags: dict[int, int] = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, values = struct.unpack_from(order + "HHI", data, entry)
        if tag not in _TIFF_TAGS:
            continue
        value = _tiff_value(data, entry, order, tag, kind, values)
        if tags.setdefault(tag, value) != value:
            raise HeaderError(f"tag {tag} ({_TIFF_TAGS[tag]}) appears twice in the first directory, {tags[tag]} then "
                              f"{value}; libtiff reads the first, other readers the last, so the size is ambiguous")
    return tags


def _tiff_value(data: Data, entry: int, order: str, tag: int, kind: int, values: int) -> int:
    if values != 1:
        raise HeaderError(f"tag {tag} ({_TIFF_TAGS[tag]}) holds {values} values, not one")
    if kind == 1:  # BYTE
        return data[entry + 8]
    if kind == 3:  # SHORT, left-justified in the value field
        return int(struct.unpack_from(order + "H", data, entry + 8)[0])
    if kind == 4:  # LONG
        return int(struct.unpack_from(order + "I", data, entry + 8)[0])
    raise HeaderError(f"tag {tag} ({_TIFF_TAGS[tag]}) has type {kind}; only BYTE, SHORT or LONG sizes are read")


def _tiff_tile(tags: dict[int, int]) -> SizeClaim:
    if 322 not in tags or 323 not in tags:
        raise HeaderError("TIFF has only one of TileWidth and TileLength (libtiff needs both)")
    if tags[322] == 0 or tags[323] == 0:
        raise HeaderError(f"TIFF tiles of {tags[322]}x{tags[323]} are empty")
    return SizeClaim("TIFF tile", tags[322], tags[323])


# ----------------------------------------------------------------------------------------- WebP
def _webp_claims(data: Data) -> list[SizeClaim]:
    chunk = bytes(data[12:16])
    if chunk != b"VP8X":
        return [SizeClaim("image", *_webp_frame(data, 12))]
    if len(data) < 30:
        raise HeaderError("WebP VP8X chunk is cut short")
    if data[20] & 0x02:
        raise UnsupportedImage("animated WebP: only still pictures are inspected")
    canvas = (1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
    frame = _webp_inner_frame(data)
    if frame is not None and frame != canvas:
        raise HeaderError(f"the VP8X canvas {canvas[0]}x{canvas[1]} and its frame {frame[0]}x{frame[1]} differ")
    return [SizeClaim("image", *canvas)]


def _webp_inner_frame(data: Data) -> tuple[int, int] | None:
    """The VP8/VP8L frame after a VP8X chunk and its optional chunks (ICCP, ALPH...), if there is one."""
    offset = 12
    while offset + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, offset)
        if kind in (b"VP8 ", b"VP8L"):
            return _webp_frame(data, offset)
        offset += 8 + size + (size & 1)
    return None


def _webp_frame(data: Data, offset: int) -> tuple[int, int]:
    kind, body = bytes(data[offset:offset + 4]), bytes(data[offset + 8:offset + 18])
    if kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF  # the top two bits are a scale libwebp ignores
    if kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    raise HeaderError(f"WebP has no readable frame header (chunk {kind!r} at byte {offset})")


_READERS: dict[str, Callable[[Data], list[SizeClaim]]] = {
    "png": _png_claims, "jpeg": _jpeg_claims, "bmp": _bmp_claims, "tiff": _tiff_claims, "webp": _webp_claims,
}
