"""One data directory, one station, one feed (issue 35, finding 7): two feeds cannot share a station."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import InspectConfig
from inspector.errors import ConfigError
from inspector.feeds.folder import run_folder
from inspector.feeds.stations import claim_station
from inspector.store import Store
from tests.fake_engine import FakeEngine, board
from tests.runner_config import runner_config


def test_two_feeds_cannot_share_a_station_on_one_store(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    store = Store.open(tmp_path / "shared")
    first = claim_station(store, tmp_path / "a", "line-1", "watch")
    assert first.data_dir == str((tmp_path / "a").resolve()) and first.feed == "watch"
    store.set_station_state("line-1", "running")  # the first feed is alive
    with pytest.raises(ConfigError, match="must name its own station"):
        claim_station(store, tmp_path / "b", "line-1", "camera")
    assert claim_station(store, tmp_path / "b", "line-2", "camera").feed == "camera"
    store.set_station_state("line-1", "stopped")  # the first feed stopped: its name may move on
    assert claim_station(store, tmp_path / "c", "line-1", "camera").data_dir == str((tmp_path / "c").resolve())
    assert {s.name: s.feed for s in store.stations()} == {"line-1": "camera", "line-2": "camera"}
    store.close()


def test_a_data_directory_keeps_its_station(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    board(str(inbox / "one.png"), 40)
    run_folder(inbox, FakeEngine(), runner_config(data, station="line-1"), InspectConfig(), once=True)
    assert (data / "station").read_text().strip() == "line-1"
    board(str(inbox / "two.png"), 41, seed=2)
    with pytest.raises(ConfigError, match="data directory of station 'line-1'"):
        run_folder(inbox, FakeEngine(), runner_config(data, station="station-1"), InspectConfig(), once=True)
    assert (inbox / "two.png").exists()  # refused before it took anything


def test_a_second_runner_on_a_shared_store_needs_its_own_station(tmp_path: Path) -> None:
    shared = tmp_path / "store"
    shared.mkdir()
    db = f"sqlite:///{shared / 'inspector.db'}"
    with Store.open(db) as store:
        store.claim_station("station-1", data_dir=str((tmp_path / "elsewhere").resolve()), feed="camera")
        store.set_station_state("station-1", "running")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    board(str(inbox / "one.png"), 40)
    with pytest.raises(ConfigError, match="fed by a camera"):
        run_folder(inbox, FakeEngine(), runner_config(tmp_path / "data", station="station-1", db_url=db), InspectConfig(),
                   once=True)
    second = runner_config(tmp_path / "data2", station="station-2", db_url=db)
    stats = run_folder(inbox, FakeEngine(), second, InspectConfig(), once=True)
    assert stats.processed == 1
