"""load_image gives pixels or an ImageLoadError naming the file and the reason; never None."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.imageio import decode_image, load_image
from inspector.errors import ImageLoadError


def board(height: int = 48, width: int = 64, colour: bool = True) -> np.ndarray:
    rng = np.random.default_rng(0)
    gray = (np.add.outer(np.arange(height), np.arange(width)) * 3 % 256).astype(np.uint8)
    if not colour:
        return gray
    noise = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    return np.dstack([gray, 255 - gray, gray // 2]) // 2 + noise


def write(path: Path, image: np.ndarray) -> Path:
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def handmade_png(width: int, height: int, color_type: int, rows: bytes, bit_depth: int = 8) -> bytes:
    """A PNG written byte by byte (for layouts OpenCV will not encode, and for lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def expect_error(path: Path, *words: str, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(path, **kwargs)
    error = info.value
    assert error.path == str(path) and str(path) in str(error)
    for word in words:
        assert word in error.reason.lower(), error.reason
    return error


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_colour_and_gray_load_exactly(tmp_path: Path, suffix: str) -> None:
    colour = board()
    gray = board(colour=False)
    if suffix == ".webp":  # WebP lossless needs the quality flag
        for name, image in (("c", colour), ("g", gray)):
            ok, data = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])
            (tmp_path / f"{name}.webp").write_bytes(data.tobytes())
        loaded = load_image(tmp_path / "c.webp")
        assert loaded.shape == colour.shape and np.array_equal(loaded, colour)
        return
    loaded_colour = load_image(write(tmp_path / f"c{suffix}", colour))
    loaded_gray = load_image(write(tmp_path / f"g{suffix}", gray))
    assert loaded_colour.dtype == np.uint8 and np.array_equal(loaded_colour, colour)
    assert loaded_gray.ndim == 2 and np.array_equal(loaded_gray, gray)


def test_jpeg_colour_and_gray_load_close(tmp_path: Path) -> None:
    colour = board()
    gray = board(colour=False)
    loaded_colour = load_image(write(tmp_path / "c.jpg", colour))
    loaded_gray = load_image(write(tmp_path / "g.jpg", gray))
    assert loaded_colour.shape == colour.shape and loaded_gray.shape == gray.shape
    assert np.abs(loaded_gray.astype(int) - gray).mean() < 6


def test_channel_conversion_on_request(tmp_path: Path) -> None:
    path = write(tmp_path / "c.png", board())
    gray = load_image(path, channels=1)
    assert gray.ndim == 2 and np.array_equal(gray, cv2.cvtColor(board(), cv2.COLOR_BGR2GRAY))
    assert load_image(write(tmp_path / "g.png", board(colour=False)), channels=3).shape == (48, 64, 3)
    expect_error(path, "channels", channels=2)


def test_missing_and_zero_byte_files(tmp_path: Path) -> None:
    expect_error(tmp_path / "absent.png", "not found")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    expect_error(empty, "empty", "0 bytes")


def test_truncated_png_cut_in_half(tmp_path: Path) -> None:
    data = (write(tmp_path / "full.png", board(96, 96))).read_bytes()
    half = tmp_path / "half.png"
    half.write_bytes(data[: len(data) // 2])
    expect_error(half, "truncated", "iend")


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = write(tmp_path / "full.jpg", board(96, 96)).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    expect_error(cut, "truncated", "end-of-image")


def test_corrupt_png_body_is_an_error_not_none(tmp_path: Path) -> None:
    data = bytearray(write(tmp_path / "full.png", board(96, 96)).read_bytes())
    # Keep signature, IHDR and the IEND trailer, scramble the compressed pixels in between.
    rng = np.random.default_rng(1)
    data[40:-20] = rng.integers(0, 256, size=len(data) - 60, dtype=np.uint8).tobytes()
    bad = tmp_path / "scrambled.png"
    bad.write_bytes(bytes(data))
    expect_error(bad, "corrupt")


def test_random_garbage_and_text_named_png(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    expect_error(garbage, "unrecognised")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    expect_error(text, "unrecognised")


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    gif = tmp_path / "board.gif"
    gif.write_bytes(b"GIF89a" + b"\x01\x00\x01\x00\x00\x00\x00" + b";")
    expect_error(gif, "unsupported")


def test_huge_header_png_refused_before_decoding(tmp_path: Path) -> None:
    # Valid CRCs, a claim of 100000 x 100000 pixels, and almost no data behind it.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(handmade_png(100_000, 100_000, 0, b"\x00" * 64))
    error = expect_error(bomb, "100000x100000", "limit")
    assert "10000000000" in error.reason


def test_pixel_cap_applies_to_normal_images(tmp_path: Path) -> None:
    path = write(tmp_path / "c.png", board())
    expect_error(path, "limit", max_pixels=1000)
    assert load_image(path, max_pixels=48 * 64).shape == (48, 64, 3)


def test_sixteen_bit_png_scaled_to_eight_bit(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 0x1234], [0x8000, 0xABCD, 0xFF00, 0xFFFF]], dtype=np.uint16)
    loaded = load_image(write(tmp_path / "deep.png", values))
    assert loaded.dtype == np.uint8
    assert loaded.tolist() == [[0, 0, 1, 0x12], [0x80, 0xAB, 0xFF, 0xFF]]


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    colour = board()
    alpha = np.full(colour.shape[:2], 7, dtype=np.uint8)  # nearly transparent: compositing would darken
    loaded = load_image(write(tmp_path / "rgba.png", np.dstack([colour, alpha])))
    assert loaded.shape == colour.shape and np.array_equal(loaded, colour)


def test_gray_alpha_becomes_gray(tmp_path: Path) -> None:
    gray = np.array([[10, 20, 30], [40, 50, 60]], dtype=np.uint8)
    alpha = np.full_like(gray, 128)
    interleaved = np.dstack([gray, alpha]).reshape(2, -1)
    rows = b"".join(b"\x00" + row.tobytes() for row in interleaved)  # filter byte 0 per row
    path = tmp_path / "gray_alpha.png"
    path.write_bytes(handmade_png(3, 2, 4, rows))
    loaded = load_image(path)
    assert loaded.ndim == 2 and loaded.tolist() == gray.tolist()


def test_decode_image_names_the_source() -> None:
    ok, data = cv2.imencode(".png", board())
    assert np.array_equal(decode_image(data.tobytes(), "camera-0"), board())
    with pytest.raises(ImageLoadError) as info:
        decode_image(b"nonsense", "camera-0")
    assert str(info.value).startswith("camera-0:")


def lying_tiff(width: int, height: int, big_endian: bool = False) -> bytes:
    """A classic TIFF whose first directory claims width x height (LONG tags) and holds no pixels."""
    order = ">" if big_endian else "<"
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8 << (16 if big_endian else 0)),
               (262, 3, 1, 1 << (16 if big_endian else 0))]
    body = struct.pack(order + "H", len(entries))
    body += b"".join(struct.pack(order + "HHII", *entry) for entry in entries) + struct.pack(order + "I", 0)
    return (b"MM\x00*" if big_endian else b"II*\x00") + struct.pack(order + "I", 8) + body


def lying_webp(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP whose canvas claims width x height and has no image chunk."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


@pytest.mark.parametrize("fmt", ["tiff-le", "tiff-be", "webp"])
def test_tiff_and_webp_headers_claiming_100000_squared_are_refused_before_decoding(
        tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = lying_webp(100_000, 100_000) if fmt == "webp" else lying_tiff(100_000, 100_000, fmt == "tiff-be")
    path = tmp_path / f"bomb.{fmt[:4]}"
    path.write_bytes(data)

    def no_decoding(*_args: object) -> None:
        raise AssertionError("the decoder was called on an oversized image")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    error = expect_error(path, "100000x100000", "limit")
    assert "10000000000" in error.reason


def test_real_tiff_and_webp_pass_the_header_check_and_big_tiff_is_refused(tmp_path: Path) -> None:
    for suffix in (".tiff", ".webp"):
        path = write(tmp_path / f"ok{suffix}", board())
        assert load_image(path).shape == (48, 64, 3)
        expect_error(path, "limit", max_pixels=48 * 64 - 1)
    big = tmp_path / "big.tiff"
    big.write_bytes(b"II+\x00" + b"\x08\x00\x00\x00" + b"\x00" * 64)
    expect_error(big, "bigtiff")
