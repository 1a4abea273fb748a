"""Housekeeping (issue 14): retention by age, and a pause instead of a failure when the disk is full."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from inspector.config import InspectConfig
from inspector.feeds import housekeeping
from inspector.feeds.folder import run_folder
from inspector.feeds.health import Metrics
from inspector.store import Store
from tests.fake_engine import FakeEngine, board
from tests.runner_config import runner_config as config


def test_a_nearly_full_disk_pauses_taking_boards_and_resumes_when_space_is_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    board(str(inbox / "a.png"), 60, seed=1)
    free = {"bytes": 10 * 1024**2}
    monkeypatch.setattr(housekeeping, "free_bytes", lambda _path: free["bytes"])
    cfg = config(data, min_free_bytes=100 * 1024**2)
    stats = run_folder(inbox, FakeEngine(), cfg, InspectConfig(), once=True)
    assert stats.processed == 0 and os.listdir(inbox) == ["a.png"]  # waits in the inbox, nothing lost
    store = Store.open(data)
    [event] = store.events(kind="disk_full")
    assert "min_free_bytes" in event.detail and "taking no new boards" in event.detail
    free["bytes"] = 10 * 1024**3
    stats = run_folder(inbox, FakeEngine(), cfg, InspectConfig(), once=True)
    assert stats.processed == 1 and os.listdir(data / "done") == ["a.png"]


def test_health_turns_unhealthy_while_paused() -> None:
    metrics = Metrics()
    metrics.set_paused(True)
    status = metrics.status(stale_after_s=60.0)
    assert status["status"] == "disk_full" and not metrics.healthy(60.0)
    metrics.set_paused(False)
    assert metrics.healthy(60.0)


def test_retention_removes_old_files_from_done_overlays_and_camera_only(tmp_path: Path) -> None:
    old = time.time() - 10 * 86400
    for folder in ("done", "overlays", "camera", "quarantine", "processing"):
        (tmp_path / folder).mkdir()
        for name, mtime in (("old.png", old), ("new.png", None)):
            path = tmp_path / folder / name
            path.write_bytes(b"x")
            if mtime is not None:
                os.utime(path, (mtime, mtime))
    assert housekeeping.sweep(tmp_path, retention_days=7) == 3
    for folder in ("done", "overlays", "camera"):
        assert os.listdir(tmp_path / folder) == ["new.png"]
    for folder in ("quarantine", "processing"):  # need a person: never cleaned
        assert sorted(os.listdir(tmp_path / folder)) == ["new.png", "old.png"]
    assert housekeeping.sweep(tmp_path, retention_days=0) == 0
