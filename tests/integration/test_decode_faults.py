"""The folder runner against decoders that hang or allocate past the cap, and forged headers (issue 35).

The board at fault goes to quarantine/ with its reason (a row with verdict "error"), the boards after
it are inspected, and no decoding worker outlives the run."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import InspectConfig
from inspector.feeds import decoder
from inspector.feeds.decoder import DecoderUnavailable
from inspector.feeds.folder import run_folder
from inspector.store import Store
from tests.fake_engine import FakeEngine, board
from tests.faulty_decode_worker import HANG
from tests.runner_config import runner_config as config


def drop(path: Path, data: bytes, order: int) -> None:
    """Write `data` with an mtime that puts it `order`-th in the runner's queue."""
    path.write_bytes(data)
    stamp = time.time() - 100 + order
    os.utime(path, (stamp, stamp))


def worker_processes(module: str) -> list[int]:
    """Live processes (not zombies) started for `module` by this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if module.encode() in command and state[0] != "Z" and int(state[1]) == os.getpid():
            found.append(int(entry.name))
    return found


def rows(data: Path) -> dict[str, tuple[str, str]]:
    return {row.source_name: (row.verdict, row.error or "") for row in Store.open(data).list_inspections()}


def test_a_decoder_that_hangs_is_ended_and_its_board_quarantined_while_later_boards_are_inspected(
        dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "WORKER_MODULE", "tests.faulty_decode_worker")
    inbox, data = dirs
    drop(inbox / "good-1.png", board("", 60, seed=1), 0)
    drop(inbox / "hang.png", board("", 70, seed=2) + HANG, 1)
    drop(inbox / "good-2.png", board("", 80, seed=3), 2)
    started = time.monotonic()
    stats = run_folder(inbox, FakeEngine(), config(data, decode_timeout_seconds=1.0), InspectConfig(), once=True)
    assert time.monotonic() - started < 20
    assert (stats.processed, stats.quarantined) == (2, 1)
    assert sorted(os.listdir(data / "done")) == ["good-1.png", "good-2.png"]
    assert os.listdir(data / "quarantine") == ["hang.png"] and os.listdir(inbox) == []
    verdict, reason = rows(data)["hang.png"]
    assert verdict == "error" and "took longer than 1 s" in reason and "decoder was stopped" in reason
    assert worker_processes("tests.faulty_decode_worker") == []


def test_a_decode_that_allocates_past_the_cap_is_quarantined_and_the_runner_goes_on(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    big = np.zeros((4000, 6000), np.uint8)  # 24 MB of pixels in a 30 kB file, under the pixel cap
    ok, encoded = cv2.imencode(".png", big)
    assert ok
    drop(inbox / "big.png", encoded.tobytes(), 0)
    drop(inbox / "good.png", board("", 60, seed=4), 1)
    stats = run_folder(inbox, FakeEngine(), config(data, decode_memory_mb=16), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (1, 1)
    verdict, reason = rows(data)["big.png"]
    assert verdict == "error" and "more memory than it may have" in reason and "16 MiB" in reason
    assert worker_processes("inspector.feeds.decode_worker") == []


def test_the_two_width_tiff_is_quarantined_before_decoding(dirs: tuple[Path, Path]) -> None:
    """Issue 35: ImageWidth 200 then 10 was checked as 10 wide and decoded 200 wide."""
    inbox, data = dirs
    entries = [(256, 200), (256, 10), (257, 10), (258, 8), (259, 1), (262, 1), (273, 0), (277, 1), (278, 10),
               (279, 2000)]
    directory = struct.pack("<H", len(entries))
    pixels_at = 8 + 2 + 12 * len(entries) + 4
    for tag, value in entries:
        directory += struct.pack("<HHII", tag, 4, 1, pixels_at if tag == 273 else value)
    drop(inbox / "two-widths.tiff", b"II*\x00" + struct.pack("<I", 8) + directory + bytes(4) + bytes(2000), 0)
    stats = run_folder(inbox, FakeEngine(), config(data), InspectConfig(max_pixels=100), once=True)
    assert stats.quarantined == 1
    verdict, reason = rows(data)["two-widths.tiff"]
    assert verdict == "error" and "tag 256 (ImageWidth) appears twice" in reason and "200 then 10" in reason


def test_a_decoder_that_cannot_start_stops_the_runner_before_any_board_is_claimed(
        dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "WORKER_MODULE", "tests.no_such_decode_worker")
    inbox, data = dirs
    drop(inbox / "good.png", board("", 60, seed=5), 0)
    with pytest.raises(DecoderUnavailable, match="decoding worker did not start"):
        run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert os.listdir(inbox) == ["good.png"]  # the board waits for a runner that can decode it
