"""Poison inputs (issue 14): no file dropped into the inbox stops the runner or makes it loop.

Each board ends in done/ or quarantine/ with a row or an error event; nothing is lost.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from inspector.config import InspectConfig
from inspector.core.results import InspectionResult
from inspector.feeds.folder import run_folder
from inspector.store import Store
from tests.fake_engine import FakeEngine, board
from tests.runner_config import runner_config as config


def names(folder: Path) -> list[bytes]:
    return sorted(os.fsencode(entry) for entry in os.listdir(folder))


def test_latin1_file_name_is_stored_with_its_bytes_and_the_inbox_drains(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    raw = b"caf\xe9-board.png"
    board(os.fsdecode(bytes(inbox) + b"/" + raw), 60, seed=1)
    board(str(inbox / "plain.png"), 180, seed=2)
    for _ in range(2):  # the second run finds nothing left over: no loop on restart
        run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert os.listdir(inbox) == [] and os.listdir(data / "processing") == []
    assert names(data / "done") == sorted([b"caf\\xe9-board.png", b"plain.png"])
    rows = {row.source_name: row for row in Store.open(data).list_inspections()}
    assert set(rows) == {"caf\\xe9-board.png", "plain.png"}
    latin = rows["caf\\xe9-board.png"]
    assert latin.verdict == "pass" and bytes.fromhex(latin.source_name_raw or "") == raw
    assert rows["plain.png"].source_name_raw is None


def test_a_250_byte_name_that_collides_in_done_gets_a_name_that_fits(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    name = "b" * 246 + ".png"
    (data / "done").mkdir(parents=True)
    (data / "done" / name).write_bytes(b"an older board under the same name")
    board(str(inbox / name), 60, seed=3)
    stats = run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert stats.processed == 1 and os.listdir(inbox) == [] and os.listdir(data / "processing") == []
    stored = [p for p in (data / "done").iterdir() if p.name != name]
    assert len(stored) == 1 and len(os.fsencode(stored[0].name)) <= 255 and stored[0].suffix == ".png"
    [row] = Store.open(data).list_inspections()
    assert row.source_name == name and Path(row.image_path) == stored[0]


def test_a_2gb_sparse_file_is_quarantined_unread(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, data = dirs
    huge = inbox / "huge.png"
    with open(huge, "wb") as stream:
        stream.write(b"\x89PNG\r\n\x1a\n")
        stream.truncate(2 * 1024**3)
    board(str(inbox / "good.png"), 60, seed=4)
    real_read = os.read

    def bounded_read(fd: int, size: int) -> bytes:
        assert size <= 64 * 1024**2, "a read larger than the runner's cap"
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", bounded_read)
    stats = run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (1, 1)
    assert names(data / "quarantine") == [b"huge.png"]
    [event] = Store.open(data).events(kind="quarantine")
    assert "huge.png" in event.detail and "over the limit" in event.detail


def test_a_symlink_to_dev_zero_and_a_fifo_are_quarantined_never_read(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    os.symlink("/dev/zero", inbox / "zero.png")
    os.mkfifo(inbox / "pipe.png")
    board(str(inbox / "good.png"), 60, seed=5)
    stats = run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (1, 2)
    assert os.listdir(inbox) == [] and names(data / "done") == [b"good.png"]
    assert stat.S_ISLNK(os.lstat(data / "quarantine" / "zero.png").st_mode)
    assert stat.S_ISFIFO(os.lstat(data / "quarantine" / "pipe.png").st_mode)
    details = " | ".join(event.detail for event in Store.open(data).events(kind="quarantine"))
    assert "symbolic link" in details and "FIFO" in details and "never read" in details


def test_a_symlink_swapped_in_after_the_claim_is_not_followed(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    inbox, data = dirs
    target = tmp_path / "secret.png"
    board(str(target), 60, seed=6)
    (data / "processing").mkdir(parents=True)
    os.symlink(target, data / "processing" / "swapped.png")  # what a swap between scan and claim leaves
    run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert stat.S_ISLNK(os.lstat(data / "quarantine" / "swapped.png").st_mode)
    # The line hears of it (issue 35): an error row, digested by what names it, never by the target's bytes.
    [row] = Store.open(data).list_inspections()
    assert row.verdict == "error" and "symbolic link" in (row.error or "")
    assert row.input_sha256 != hashlib.sha256(target.read_bytes()).hexdigest()


@pytest.mark.parametrize("exit_status", [0, 3])
def test_a_hook_that_prints_binary_never_stops_the_runner(dirs: tuple[Path, Path], tmp_path: Path,
                                                          exit_status: int) -> None:
    inbox, data = dirs
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '\\377\\376\\000\\351binary\\n'\n"
                      f"printf '\\377\\351\\n' >&2\nexit {exit_status}\n")
    script.chmod(0o755)
    board(str(inbox / "a.png"), 60, seed=7)
    board(str(inbox / "b.png"), 180, seed=8)
    stats = run_folder(inbox, FakeEngine(), config(data, hook=str(script)), InspectConfig(), once=True)
    assert stats.processed == 2 and names(data / "done") == [b"a.png", b"b.png"]
    errors = Store.open(data).events(kind="error")
    assert len(errors) == (2 if exit_status else 0)
    assert all("exit status 3" in event.detail for event in errors)


class Crash(BaseException):
    """Stands in for what takes the whole process down (a decoder segfault, the OOM killer)."""


class PoisonEngine(FakeEngine):
    """Crashes the process on any batch that holds a board with this brightness; raises on another."""

    def __init__(self, crash_score: float, raise_score: float | None = None) -> None:
        super().__init__()
        self.crash_score = crash_score
        self.raise_score = raise_score

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        for image in images:
            score = round(float(image.mean()) / 100.0, 1)
            if score == self.crash_score:
                raise Crash("segfault")
            if score == self.raise_score:
                raise ValueError("an odd shape the engine trips over")
        return super().inspect_batch(images)


def test_a_board_that_takes_the_process_down_is_quarantined_after_max_attempts(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    board(str(inbox / "good-1.png"), 60, seed=9)
    board(str(inbox / "poison.png"), 150, seed=10)
    board(str(inbox / "good-2.png"), 80, seed=11)
    crashes = 0
    for _ in range(10):  # a restart loop, as systemd would run it
        try:
            run_folder(inbox, PoisonEngine(crash_score=1.5), config(data, max_attempts=3), InspectConfig(), once=True)
            break
        except Crash:
            crashes += 1
    else:
        pytest.fail("the runner never got past the poison board")
    assert crashes == 4  # one in the batch, then three alone
    assert names(data / "done") == [b"good-1.png", b"good-2.png"] and names(data / "quarantine") == [b"poison.png"]
    store = Store.open(data)
    # Issue 35: the board that crashed the runner has a row and an `error` verdict the line heard.
    rows = {row.source_name: row for row in store.list_inspections()}
    assert set(rows) == {"good-1.png", "good-2.png", "poison.png"}
    assert rows["poison.png"].verdict == "error" and "3 times" in (rows["poison.png"].error or "")
    assert store.outbox_backlog() == 0  # published (stdout JSON lines) before the clean exit
    [event] = store.events(kind="quarantine")
    assert "poison.png" in event.detail and "3 times" in event.detail
    assert not (data / "attempts.json").exists() or (data / "attempts.json").read_text() == "{}"
    # The same bytes dropped again are recognised by their row: quarantined at once, never tried.
    shutil.copy(data / "quarantine" / "poison.png", inbox / "poison-again.png")
    out = io.StringIO()
    run_folder(inbox, PoisonEngine(crash_score=1.5), config(data, json_lines=True), InspectConfig(), once=True,
               stream=out)
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["verdict"] == "error" and line["inspection_id"] == rows["poison.png"].id
    assert b"poison-again.png" in names(data / "quarantine")


def test_any_exception_an_image_causes_quarantines_it(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    board(str(inbox / "good.png"), 60, seed=12)
    board(str(inbox / "odd.png"), 120, seed=13)
    stats = run_folder(inbox, PoisonEngine(crash_score=-1, raise_score=1.2), config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (1, 1)
    [row] = [r for r in Store.open(data).list_inspections() if r.verdict == "error"]
    assert row.source_name == "odd.png" and "ValueError" in (row.error or "")


def test_a_board_whose_pictures_cannot_be_drawn_is_quarantined_and_the_batch_goes_on(
        dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.feeds.processor import Processor

    real = Processor.save_images

    def draw(self: Processor, image: np.ndarray, result: InspectionResult, digest: str, name: str) -> tuple[str, str]:
        if name == "odd.png":
            raise ValueError("a shape the renderer trips over")
        return real(self, image, result, digest, name)

    monkeypatch.setattr(Processor, "save_images", draw)
    inbox, data = dirs
    board(str(inbox / "good.png"), 60, seed=14)
    board(str(inbox / "odd.png"), 70, seed=15)
    stats = run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (1, 1)
    assert names(data / "quarantine") == [b"odd.png"] and names(data / "done") == [b"good.png"]
    [row] = [r for r in Store.open(data).list_inspections() if r.verdict == "error"]
    assert "cannot be drawn" in (row.error or "")
