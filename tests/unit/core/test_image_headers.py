"""Image headers are read the way the decoders read them (issue 35): every size a file claims is
checked before decoding, and a header a decoder would read otherwise than our check is refused.

Each forged file below is refused with `cv2.imdecode` replaced by a trap, so "refused before
decoding" is what is tested, not OpenCV's own refusal afterwards."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from inspector.core.imageheaders import SizeClaim, header_claims
from inspector.core.imageio import decode_image, sniff_format
from inspector.errors import ImageLoadError


def board(height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def encode(suffix: str, image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, image, list(params))
    assert ok
    return data.tobytes()


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def trap(*_args: object) -> None:
        raise AssertionError("the decoder was called on a file the header check should have refused")

    monkeypatch.setattr(cv2, "imdecode", trap)


def refusal(data: bytes, max_pixels: int = 40_000_000) -> str:
    with pytest.raises(ImageLoadError) as info:
        decode_image(data, "forged", max_pixels=max_pixels)
    return info.value.reason


# ------------------------------------------------------------------------------------------ TIFF
def tiff(entries: list[tuple[int, int, int | str]], pixels: bytes = b"", big_endian: bool = False) -> bytes:
    """A classic TIFF whose first directory holds `entries` (tag, type, value), in this order and
    with one value each; the value "DATA" is the offset of `pixels`, stored after the directory."""
    order = ">" if big_endian else "<"
    data_at = 8 + 2 + 12 * len(entries) + 4
    body = struct.pack(order + "H", len(entries))
    for tag, kind, value in entries:
        number = data_at if value == "DATA" else int(value)
        field = bytes([number]) if kind == 1 else struct.pack(order + ("H" if kind == 3 else "I"), number)
        body += struct.pack(order + "HHI", tag, kind, 1) + field.ljust(4, b"\0")
    head = (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(order + "I", 8)
    return head + body + struct.pack(order + "I", 0) + pixels


def gray_strip_tiff(width_tags: list[int], height: int, rows: int | None = None, big_endian: bool = False) -> bytes:
    """An uncompressed 8-bit gray TIFF of one strip, with one ImageWidth entry per value of `width_tags`."""
    width = width_tags[0]
    entries: list[tuple[int, int, int | str]] = [(256, 3, value) for value in width_tags]
    entries += [(257, 3, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, "DATA"), (277, 3, 1),
                (278, 4, height if rows is None else rows), (279, 4, width * height)]
    pixels = bytes(width * height) if width * height <= 1 << 20 else bytes(64)  # a bomb needs no pixels
    return tiff(entries, pixels, big_endian)


def test_opencv_decodes_the_first_of_two_width_tags() -> None:
    """Why the order matters: libtiff keeps the first ImageWidth; the old check kept the last (issue 35)."""
    pixels = cv2.imdecode(np.frombuffer(gray_strip_tiff([200, 10], 10), np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels.shape == (10, 200)


@pytest.mark.parametrize("big_endian", [False, True])
def test_a_tiff_with_two_different_width_tags_is_refused_before_decoding(no_decoding: None, big_endian: bool) -> None:
    reason = refusal(gray_strip_tiff([200, 10], 10, big_endian=big_endian), max_pixels=100)
    assert "tag 256 (ImageWidth) appears twice" in reason and "200 then 10" in reason and "ambiguous" in reason


def test_a_tiff_whose_first_width_tag_is_a_bomb_is_refused_before_decoding(no_decoding: None) -> None:
    reason = refusal(gray_strip_tiff([40_000, 10], 50_000))
    assert "appears twice" in reason and "40000 then 10" in reason


def test_a_size_tag_repeated_with_the_same_value_is_harmless() -> None:
    assert decode_image(gray_strip_tiff([12, 12], 7), "twice").shape == (7, 12)


def test_tiff_strips_taller_than_the_cap_are_refused_before_decoding(no_decoding: None) -> None:
    """OpenCV allocates width x RowsPerStrip for its read buffer, not clipped to the image (1000 x 200000
    rows = 800 MB for a 1000x10 picture)."""
    reason = refusal(gray_strip_tiff([1000], 10, rows=200_000), max_pixels=1_000_000)
    assert "TIFF strips of 1000x200000" in reason and "over the limit" in reason


def test_one_strip_of_the_whole_image_is_read_as_the_image() -> None:
    for rows in (0, 0xFFFFFFFF):  # "one strip": OpenCV reads the image height then
        claims = header_claims("tiff", gray_strip_tiff([20], 10, rows=rows))
        assert claims == [SizeClaim("image", 20, 10), SizeClaim("TIFF strip", 20, 10)]
    assert decode_image(gray_strip_tiff([20], 10, rows=0xFFFFFFFF), "one-strip").shape == (10, 20)


def tiled_tiff(tile_width: int, tile_length: int | None) -> bytes:
    entries: list[tuple[int, int, int | str]] = [(256, 3, 10), (257, 3, 10), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                                                 (277, 3, 1), (322, 4, tile_width)]
    entries += [(323, 4, tile_length)] if tile_length is not None else []
    return tiff([*entries, (324, 4, "DATA"), (325, 4, 256)], bytes(256))


def test_tiff_tiles_are_claims_too(no_decoding: None) -> None:
    assert header_claims("tiff", tiled_tiff(16, 16)) == [SizeClaim("image", 10, 10), SizeClaim("TIFF tile", 16, 16)]
    assert "TIFF tiles of 16000x16000" in refusal(tiled_tiff(16000, 16000))
    assert "only one of TileWidth and TileLength" in refusal(tiled_tiff(16, None))


def test_a_tiff_size_tag_holding_several_values_is_refused(no_decoding: None) -> None:
    data = bytearray(gray_strip_tiff([20], 10))
    struct.pack_into("<I", data, 8 + 2 + 4, 2)  # ImageWidth's count: libtiff refuses anything but 1
    assert "holds 2 values" in refusal(bytes(data))


# ------------------------------------------------------------------------------------------ JPEG
def segments(data: bytes) -> tuple[int, int]:
    """(start, end) of the first frame header (SOF0 or SOF2) of an OpenCV JPEG."""
    start = min(at for at in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if at > 0)
    (length,) = struct.unpack_from(">H", data, start + 2)
    return start, start + 2 + length


def with_size(sof: bytes, width: int, height: int) -> bytes:
    return sof[:5] + struct.pack(">HH", height, width) + sof[9:]


def test_a_jpeg_with_two_frame_headers_claiming_different_sizes_is_refused_before_decoding(no_decoding: None) -> None:
    data = encode(".jpg", board())
    start, end = segments(data)
    forged = data[:end] + with_size(data[start:end], 60_000, 60_000) + data[end:]
    reason = refusal(forged)
    assert "2 frame headers (SOF)" in reason and "64x48" in reason and "60000x60000" in reason


def test_a_second_frame_header_between_progressive_scans_is_found(no_decoding: None) -> None:
    """The walk goes through the entropy-coded data, as libjpeg does, not only up to the first scan."""
    data = encode(".jpg", board(), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    start, end = segments(data)
    second_scan = data.find(b"\xff\xda", data.find(b"\xff\xda") + 2)
    assert second_scan > 0
    forged = data[:second_scan] + with_size(data[start:end], 9000, 9000) + data[second_scan:]
    assert "2 frame headers (SOF)" in refusal(forged)


def test_frame_headers_inside_exif_or_after_the_end_of_image_are_not_the_picture() -> None:
    data = encode(".jpg", board())
    start, end = segments(data)
    thumbnail = with_size(data[start:end], 60_000, 60_000)  # an EXIF thumbnail's frame header
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(thumbnail)) + b"Exif\0\0" + thumbnail
    trailer = b"\xff\xd8" + thumbnail + b"\xff\xd9"  # an MPO's second picture, or a camera's trailer
    forged = data[:2] + exif + data[2:] + trailer
    assert header_claims("jpeg", forged) == [SizeClaim("image", 64, 48)]
    assert decode_image(forged, "exif").shape == (48, 64, 3)


@pytest.mark.parametrize("params", [(), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_RST_INTERVAL, 2)])
def test_real_jpegs_claim_their_size(params: tuple[int, ...]) -> None:
    data = encode(".jpg", board(96, 160), *params)
    assert header_claims("jpeg", data) == [SizeClaim("image", 160, 96)]


# ------------------------------------------------------------------------------------------- BMP
def bmp(header: bytes, rows: bytes) -> bytes:
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + header + rows


def info_header(size: int, width: int, height: int, image_bytes: int = 0) -> bytes:
    return struct.pack("<IiiHHIIiiII", size, width, height, 1, 24, 0, image_bytes, 2835, 2835, 0, 0).ljust(size, b"\0")


def test_a_bmp_with_a_huge_negative_height_is_refused_before_decoding(no_decoding: None) -> None:
    reason = refusal(bmp(info_header(40, 100, -2_000_000_000), b""))
    assert "100x2000000000" in reason and "over the limit" in reason
    assert "100x2147483648" in refusal(bmp(info_header(40, 100, -(2**31)), b""))


def test_a_bmp_core_header_is_read_unsigned_as_opencv_reads_it(no_decoding: None) -> None:
    """A 12-byte core header's width 0xFF00 is 65280 pixels to OpenCV; a signed reading saw 256."""
    core = struct.pack("<IHHHH", 12, 0xFF00, 2, 1, 24)
    assert "65280x2" in refusal(bmp(core, b""), max_pixels=1000)


def test_bmp_widths_that_are_not_positive_and_unknown_header_sizes_are_refused(no_decoding: None) -> None:
    assert "width -4 is not positive" in refusal(bmp(info_header(40, -4, 3), b""))
    assert "header of 20 bytes" in refusal(bmp(struct.pack("<IiiHH", 20, 4, 3, 1, 24).ljust(20, b"\0"), b""))


def test_a_top_down_v5_bmp_decodes_right_side_up() -> None:
    image = board(3, 4)
    rows = b"".join(row.tobytes().ljust(12, b"\0") for row in image)
    data = bmp(info_header(124, 4, -3, len(rows)), rows)
    assert header_claims("bmp", data) == [SizeClaim("image", 4, 3)]
    assert np.array_equal(decode_image(data, "v5"), image)


# ------------------------------------------------------------------------------------------- PNG
def chunk(kind: bytes, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(*chunks: bytes, width: int = 4, height: int = 4) -> bytes:
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    rows = b"".join(b"\0" + bytes(width) for _ in range(height)) if width * height <= 1 << 20 else bytes(64)
    idat = chunk(b"IDAT", zlib.compress(rows))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + idat + chunk(b"IEND", b"")


def test_a_png_chunk_claiming_a_gigabyte_is_refused_before_decoding(no_decoding: None) -> None:
    """OpenCV 5 allocates each chunk before the pixels at its declared length: this 100-byte file
    made it allocate 1 GiB."""
    reason = refusal(png(chunk(b"tEXt", b"a\0b", length=1 << 30)))
    assert "chunk 'tEXt'" in reason and "1073741824 bytes" in reason and "past the end" in reason


def test_a_png_bomb_and_a_second_ihdr_are_refused_before_decoding(no_decoding: None) -> None:
    assert "100000x100000" in refusal(png(width=100_000, height=100_000))
    second = chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
    assert "a second IHDR" in refusal(png(second))


def test_an_animated_png_is_refused(no_decoding: None) -> None:
    animation = chunk(b"acTL", struct.pack(">II", 2, 0))
    assert "animated PNG" in refusal(png(animation)) and "unsupported PNG" in refusal(png(animation))


def test_a_plain_png_passes() -> None:
    assert decode_image(png(chunk(b"tEXt", b"a\0b")), "plain").shape == (4, 4)


# ------------------------------------------------------------------------------------------ WebP
def webp(*chunks: bytes) -> bytes:
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def vp8x(width: int, height: int, flags: int = 0) -> bytes:
    return b"VP8X" + struct.pack("<I", 10) + bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")


def vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | (height - 1) << 14
    body = b"\x2f" + bits.to_bytes(4, "little") + b"\0" * 3
    return b"VP8L" + struct.pack("<I", len(body)) + body


def test_a_webp_canvas_that_differs_from_its_frame_is_refused(no_decoding: None) -> None:
    reason = refusal(webp(vp8x(16, 16), vp8l(16000, 16000)))
    assert "canvas 16x16" in reason and "frame 16000x16000" in reason


def test_an_animated_webp_is_refused(no_decoding: None) -> None:
    assert "animated WebP" in refusal(webp(vp8x(16, 16, flags=0x02)))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".webp"])
def test_every_format_opencv_writes_claims_its_size(suffix: str) -> None:
    data = encode(suffix, board(96, 160))
    fmt = sniff_format(data[:64])
    assert fmt is not None and header_claims(fmt, data)[0] == SizeClaim("image", 160, 96)
