"""The decode guard (issue 35): decoding in a worker process under a time limit and a memory cap.

A decoder that hangs is killed within the limit, one that allocates past the cap fails inside the
worker, a worker that dies is replaced (once per board), and every failure is an `ImageLoadError`
with the reason; the next board decodes in a fresh worker. The misbehaving codec is
tests/faulty_decode_worker.py, selected through `decoder.WORKER_MODULE`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.imageio import decode_image
from inspector.errors import ConfigError, ImageLoadError
from inspector.feeds import decoder
from inspector.feeds.decoder import DecoderUnavailable, GuardedDecoder
from tests.conftest import REPO_ROOT
from tests.faulty_decode_worker import CRASH, HANG

MAX_PIXELS = 40_000_000


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def board(height: int = 64, width: int = 80) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def gone(pid: int) -> bool:
    """No such process, or only its zombie (an exit status nobody collected yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


@pytest.fixture
def faulty(monkeypatch: pytest.MonkeyPatch) -> Iterator[GuardedDecoder]:
    monkeypatch.setattr(decoder, "WORKER_MODULE", "tests.faulty_decode_worker")
    with GuardedDecoder(timeout_seconds=1.0) as guard:
        yield guard


def test_guarded_decoding_gives_the_pixels_and_the_reasons_of_decode_image() -> None:
    colour, gray = board(), board()[:, :, 0].copy()
    with GuardedDecoder() as guard:
        assert np.array_equal(guard.decode(png(colour), "c.png", max_pixels=MAX_PIXELS), colour)
        assert np.array_equal(guard.decode(png(gray), "g.png", max_pixels=MAX_PIXELS), gray)
        with pytest.raises(ImageLoadError) as local:
            decode_image(png(colour), "c.png", max_pixels=100)
        with pytest.raises(ImageLoadError) as guarded:
            guard.decode(png(colour), "c.png", max_pixels=100)
        assert str(guarded.value) == str(local.value) and "over the limit of 100" in str(guarded.value)
        with pytest.raises(ImageLoadError, match="unrecognised image format"):
            guard.decode(b"not an image", "notes.png", max_pixels=MAX_PIXELS)


def test_a_decoder_that_hangs_is_killed_within_the_limit_and_the_next_board_decodes(faulty: GuardedDecoder) -> None:
    faulty.start()
    first = faulty.pid
    assert first is not None
    started = time.monotonic()
    with pytest.raises(ImageLoadError) as info:
        faulty.decode(png(board()) + HANG, "hang.png", max_pixels=MAX_PIXELS)
    took = time.monotonic() - started
    assert 1.0 <= took < 10.0, took  # the limit, then a SIGKILL: no grace period to wait out
    assert info.value.path == "hang.png" and "took longer than 1 s" in info.value.reason
    assert wait_gone(first)
    assert faulty.decode(png(board()), "next.png", max_pixels=MAX_PIXELS).shape == (64, 80, 3)
    assert faulty.pid not in (None, first)


def test_a_decode_that_allocates_past_the_cap_is_ended_and_the_next_board_decodes() -> None:
    big = np.zeros((4000, 6000, 3), np.uint8)  # 72 MB of pixels in a 77 kB file
    big[::50] = 200
    with GuardedDecoder(timeout_seconds=30.0, memory_mb=48) as guard:
        guard.start()
        first = guard.pid
        with pytest.raises(ImageLoadError) as info:
            guard.decode(png(big), "big.png", max_pixels=MAX_PIXELS)
        assert "more memory than it may have" in info.value.reason and "48 MiB" in info.value.reason
        assert first is not None and wait_gone(first)  # a worker that ran out is replaced
        assert guard.decode(png(board()), "next.png", max_pixels=MAX_PIXELS).shape == (64, 80, 3)
    with GuardedDecoder(timeout_seconds=30.0, memory_mb=256) as roomy:
        assert roomy.decode(png(big), "big.png", max_pixels=MAX_PIXELS).shape == (4000, 6000, 3)


def test_a_codec_that_crashes_twice_costs_its_board_only(faulty: GuardedDecoder) -> None:
    with pytest.raises(ImageLoadError) as info:
        faulty.decode(png(board()) + CRASH, "crash.png", max_pixels=MAX_PIXELS)
    assert "crashed on it twice" in info.value.reason and "SIGSEGV" in info.value.reason
    assert faulty.decode(png(board()), "next.png", max_pixels=MAX_PIXELS).shape == (64, 80, 3)


def test_a_worker_killed_between_boards_is_replaced_without_blaming_the_next_board() -> None:
    with GuardedDecoder() as guard:
        guard.start()
        pid = guard.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the OOM killer, an operator
        assert wait_gone(pid)
        assert guard.decode(png(board()), "next.png", max_pixels=MAX_PIXELS).shape == (64, 80, 3)


def test_the_worker_ignores_stop_signals_and_ends_with_close() -> None:
    """systemd's SIGTERM reaches every process of the service: the runner finishes its board, then
    closes the guard, which ends the worker."""
    with GuardedDecoder() as guard:
        guard.start()
        pid = guard.pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGINT)
        assert guard.decode(png(board()), "b.png", max_pixels=MAX_PIXELS).shape == (64, 80, 3)
        assert guard.pid == pid
        guard.close()
        assert guard.pid is None and wait_gone(pid)


def test_the_worker_dies_with_a_runner_killed_mid_decode(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from inspector.feeds import decoder\n"
        "decoder.WORKER_MODULE = 'tests.faulty_decode_worker'\n"
        "guard = decoder.GuardedDecoder(timeout_seconds=60)\n"
        "guard.start()\n"
        "print(guard.pid, flush=True)\n"
        "guard.decode(sys.stdin.buffer.read(), 'hang.png', max_pixels=10**6)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert runner.stdin is not None and runner.stdout is not None
    worker = int(runner.stdout.readline())
    runner.stdin.write(png(board()) + HANG)
    runner.stdin.close()
    time.sleep(0.5)  # the worker is now inside the decode that never returns
    assert not gone(worker)
    runner.kill()
    runner.wait()
    assert wait_gone(worker), "the worker outlived its runner"


def test_a_worker_that_cannot_start_is_an_installation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "WORKER_MODULE", "tests.no_such_decode_worker")
    guard = GuardedDecoder()
    with pytest.raises(DecoderUnavailable, match="did not start.*No module named 'tests.no_such_decode_worker'"):
        guard.start()
    with pytest.raises(DecoderUnavailable):
        guard.decode(png(board()), "b.png", max_pixels=MAX_PIXELS)
    assert guard.pid is None


def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match="decode_timeout_seconds"):
        GuardedDecoder(timeout_seconds=0)
    with pytest.raises(ConfigError, match="decode_memory_mb"):
        GuardedDecoder(memory_mb=1)
    with GuardedDecoder(memory_mb=16) as guard, pytest.raises(ImageLoadError, match="the file alone"):
        guard.decode(bytes(17 << 20), "huge.png", max_pixels=MAX_PIXELS)
