"""Issue 35, finding 8: a passing fault is not a board's verdict; long names keep their pictures; a hook's
output is never held whole; a folder that cannot be flushed is said, not assumed durable."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from inspector.atomic import fsync_dir
from inspector.config import InspectConfig
from inspector.core.results import InspectionResult
from inspector.feeds import folder as folder_module
from inspector.feeds.folder import run_folder
from inspector.feeds.lineout import LineOut
from inspector.store import Store
from tests.fake_engine import FakeEngine, board
from tests.runner_config import runner_config as _config


class ShortOfMemory(FakeEngine):
    """ONNX Runtime's words when an allocation fails, for the first `failures` calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
                               "buffer of size 104857600")
        return super().inspect_batch(images)


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_module, "PASSING_FAULT_PAUSES_SECONDS", (0.01, 0.01))


def test_out_of_memory_for_a_moment_is_tried_again_not_stored_as_the_boards_error(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    board(str(inbox / "b.png"), 60, seed=1)
    stats = run_folder(inbox, ShortOfMemory(failures=2), _config(data), InspectConfig(), once=True)
    assert stats.processed == 1 and stats.quarantined == 0
    [row] = Store.open(data).list_inspections()
    assert row.verdict == "pass"


def test_out_of_memory_that_lasts_quarantines_without_branding_the_bytes(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    board(str(inbox / "b.png"), 60, seed=1)
    digest = hashlib.sha256((inbox / "b.png").read_bytes()).hexdigest()
    run_folder(inbox, ShortOfMemory(failures=10), _config(data), InspectConfig(), once=True)
    [row] = Store.open(data).list_inspections()
    assert row.verdict == "error" and "passing fault" in (row.error or "") and row.input_sha256 != digest
    # The same board sent again, memory back: inspected, not recognised as a known bad board.
    [kept] = list((data / "quarantine").iterdir())
    os.replace(kept, inbox / "b.png")
    assert run_folder(inbox, FakeEngine(), _config(data), InspectConfig(), once=True).processed == 1
    assert any(r.input_sha256 == digest and r.verdict == "pass" for r in Store.open(data).list_inspections())


def test_a_board_with_a_long_name_keeps_its_heatmap(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    name = "b" * 240 + ".png"  # 244 bytes: the picture names used to pass 255
    board(str(inbox / name), 180, seed=3)
    run_folder(inbox, FakeEngine(), _config(data), InspectConfig(), once=True)
    [row] = Store.open(data).list_inspections()
    assert row.verdict == "fail" and row.heatmap_path and Path(row.heatmap_path).is_file()
    assert Path(row.overlay_path).is_file() and len(os.fsencode(Path(row.heatmap_path).name)) <= 255


def test_a_hooks_output_is_never_held_whole(tmp_path: Path) -> None:
    hook = tmp_path / "noisy.sh"
    hook.write_text("#!/bin/sh\ncat > /dev/null\nhead -c 30000000 /dev/zero\nhead -c 30000000 /dev/zero >&2\n"
                    "echo 'BRIDGE DOWN' >&2\nexit 2\n")
    hook.chmod(0o755)
    failures: list[str] = []
    lineout = LineOut(json_lines=False, hook=str(hook), on_hook_failure=failures.append, hook_timeout_s=30)
    tracemalloc.start()
    problem = lineout.deliver({"source_name": "b.png", "verdict": "pass"})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert problem is not None and "exit status 2" in problem and "BRIDGE DOWN" in problem
    assert peak < 2_000_000, peak  # 60 MB printed, a few KB kept


def test_a_folder_that_cannot_be_flushed_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync

    def broken(fd: int) -> None:  # folders fail to flush (files still do)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        fsync_dir(tmp_path)
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    data.mkdir()
    (data / "station").write_text("t1\n")  # a station that started before the disk went bad
    board(str(inbox / "b.png"), 60, seed=4)
    stats = run_folder(inbox, FakeEngine(), _config(data), InspectConfig(), once=True)
    assert stats.processed == 1 and (data / "done").iterdir()
    assert any("could not be flushed to disk" in e.detail for e in Store.open(data).events(kind="error"))
