"""The results store on SQLite and on a real PostgreSQL server (BOARD_INSPECTOR_TEST_PG)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from inspector.errors import StoreError, StoreUnavailable
from inspector.store import Store
from inspector.store.migrations import LATEST_VERSION

PG_URL = os.environ.get("BOARD_INSPECTOR_TEST_PG", "")
MODEL = "a" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "data")
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    opened.register_model(MODEL, "/bundles/tiny", {"architecture": "ae"})
    yield opened
    opened.close()


def record(store: Store, data: bytes, verdict: str = "pass", station: str = "s1", **extra: object) -> int:
    return store.record_inspection(station=station, input_sha256=sha(data), model_hash=MODEL, verdict=verdict,
                                   source_name=f"{data.decode()}.png", score=1.0, threshold=2.0, **extra)


def test_open_creates_latest_schema_and_is_sound(store: Store) -> None:
    assert store.schema_version() == LATEST_VERSION
    assert store.integrity_check() == "ok"


def test_record_inspection_is_idempotent_on_input_and_model(store: Store) -> None:
    first = record(store, b"board-1", "fail", regions=[{"bbox": [1, 2, 3, 4], "area": 4}])
    again = record(store, b"board-1", "pass")
    assert again == first
    other_model = store.record_inspection(station="s1", input_sha256=sha(b"board-1"), model_hash="b" * 64,
                                          verdict="pass")
    assert other_model != first
    rows = store.list_inspections(limit=10)
    assert len(rows) == 2
    stored = store.get_inspection(first)
    assert stored is not None and stored.verdict == "fail" and stored.regions == [{"bbox": [1, 2, 3, 4], "area": 4}]
    assert stored.created_at.tzinfo is not None


def test_list_filters_newest_first(store: Store) -> None:
    ids = [record(store, f"b{i}".encode(), verdict, station)
           for i, (verdict, station) in enumerate([("pass", "s1"), ("fail", "s1"), ("review", "s2"), ("error", "s2")])]
    assert [r.id for r in store.list_inspections()] == ids[::-1]
    assert [r.id for r in store.list_inspections(flagged_only=True)] == [ids[2], ids[1]]
    assert [r.id for r in store.list_inspections(station="s2")] == [ids[3], ids[2]]
    assert [r.id for r in store.list_inspections(limit=1)] == [ids[3]]
    store.add_review(ids[1], "olga", "confirm", "short", "bridge on U3")
    assert [r.id for r in store.list_inspections(flagged_only=True, unreviewed_only=True)] == [ids[2]]
    counts = store.count_inspections()
    assert counts.by_verdict == {"pass": 1, "fail": 1, "review": 1, "error": 1} and counts.unreviewed_flagged == 1
    later = store.list_inspections(since=store.get_inspection(ids[2]).created_at)  # type: ignore[union-attr]
    assert {r.id for r in later} == {ids[2], ids[3]}


def test_reviews_validate_and_list(store: Store) -> None:
    inspection = record(store, b"x", "fail")
    store.add_review(inspection, "olga", "confirm", "open", "")
    store.add_review(inspection, "ivan", "dismiss", "", "dust")
    assert [(r.operator, r.decision) for r in store.reviews_for(inspection)] == [("olga", "confirm"),
                                                                                   ("ivan", "dismiss")]
    with pytest.raises(StoreError, match="confirm or dismiss"):
        store.add_review(inspection, "olga", "maybe")
    with pytest.raises(StoreError, match="does not exist"):
        store.add_review(999_999, "olga", "confirm")


def test_threshold_versions_are_append_only(store: Store) -> None:
    assert store.current_threshold(MODEL) is None
    first = store.add_threshold_version(MODEL, 1.5, 0.4, "qa-anna", "initial line calibration")
    second = store.add_threshold_version(MODEL, 1.8, None, "qa-anna", "too many false alarms on lot 7")
    assert (first.version, second.version) == (1, 2)
    assert second.previous_image_threshold == 1.5 and second.previous_pixel_threshold == 0.4
    current = store.current_threshold(MODEL)
    assert current is not None and current.version == 2 and current.image_threshold == 1.8
    assert [t.image_threshold for t in store.threshold_history(MODEL)] == [1.5, 1.8]
    with pytest.raises(StoreError, match="reason"):
        store.add_threshold_version(MODEL, 2.0, None, "qa", " ")
    with pytest.raises(StoreError, match="not registered"):
        store.add_threshold_version("c" * 64, 2.0, None, "qa", "why")


def test_stations_and_events(store: Store) -> None:
    store.set_station_state("s1", "running")
    store.set_station_state("s1", "camera_down", last_image="frame-1.png")
    store.set_station_state("s1", "running")
    [station] = store.stations()
    assert station.state == "running" and station.last_image == "frame-1.png"
    store.record_event("s1", "start")
    store.record_event("s1", "quarantine", "bad.png: not an image")
    assert [e.kind for e in store.events(station="s1")] == ["quarantine", "start"]
    assert [e.detail for e in store.events(kind="quarantine")] == ["bad.png: not an image"]
    with pytest.raises(StoreError, match="unknown state"):
        store.set_station_state("s1", "asleep")
    with pytest.raises(StoreError, match="unknown kind"):
        store.record_event("s1", "party")


def test_register_model_keeps_first_record(store: Store) -> None:
    store.register_model(MODEL, "/elsewhere", {"architecture": "other"})
    model = store.get_model(MODEL)
    assert model is not None and model.bundle_path == "/bundles/tiny" and model.metadata == {"architecture": "ae"}


def test_older_store_is_migrated_and_newer_one_refused(store_url: str) -> None:
    store = Store.open(store_url)
    with store.engine.begin() as conn:  # put the store back at version 1: no dashboard indexes
        for name in ("ix_inspections_created_at", "ix_inspections_verdict_created_at",
                     "ix_inspections_station_created_at", "ix_reviews_inspection_id", "ix_events_station_created_at"):
            conn.execute(text(f"DROP INDEX {name}"))
        conn.execute(text("UPDATE schema_version SET version = 1"))
    store.close()
    migrated = Store.open(store_url)
    assert migrated.schema_version() == LATEST_VERSION
    with migrated.engine.connect() as conn:
        names = {ix["name"] for ix in inspect(conn).get_indexes("inspections")}
    assert "ix_inspections_verdict_created_at" in names
    with migrated.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 99"))
    migrated.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store.open(store_url)


def test_store_before_threshold_source_gains_the_column_and_keeps_its_rows(store_url: str) -> None:
    store = Store.open(store_url)
    store.register_model(MODEL, "/bundles/tiny", {"architecture": "ae"})
    store.record_inspection(station="s1", input_sha256="a" * 64, model_hash=MODEL, verdict="pass", score=0.1,
                            threshold=1.0, threshold_version=4, threshold_source="bundle")
    with store.engine.begin() as conn:  # back to a version-2 store: inspections without the column
        conn.execute(text("ALTER TABLE inspections DROP COLUMN threshold_source"))  # SQLite >= 3.35 has it
        conn.execute(text("UPDATE schema_version SET version = 2"))
    with store.engine.connect() as conn:
        assert "threshold_source" not in {c["name"] for c in inspect(conn).get_columns("inspections")}
    store.close()
    migrated = Store.open(store_url)
    assert migrated.schema_version() == LATEST_VERSION
    (row,) = migrated.list_inspections()
    assert row.threshold_version == 4 and row.threshold_source is None  # unknown for old rows, not guessed
    migrated.record_inspection(station="s1", input_sha256="b" * 64, model_hash=MODEL, verdict="pass",
                               threshold_version=1, threshold_source="qa")
    assert [r.threshold_source for r in migrated.list_inspections()] == ["qa", None]
    migrated.close()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE inspections (id INTEGER)")
    with pytest.raises(StoreError, match="no schema_version"):
        Store.open(path)


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match=r"inspector:\*\*\*@127\.0\.0\.1:1/.*open failed"):
        Store.open("postgresql+psycopg://inspector:secret@127.0.0.1:1/none")


def test_sqlite_uses_wal_and_takes_write_lock_up_front(tmp_path: Path) -> None:
    store = Store.open(tmp_path, busy_timeout_s=0.2)
    with sqlite3.connect(tmp_path / "inspector.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    blocker = sqlite3.connect(tmp_path / "inspector.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        # A reader is never blocked by the writer in WAL mode...
        assert store.list_inspections() == []
        # ...while a second writer waits, retries with backoff, then fails with a clear message, as an
        # unavailable store (the feeds hold their boards and retry; the request itself was fine).
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="record_event failed.*locked"):
            store.record_event("s1", "start")
        assert time.monotonic() - started >= 0.2
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.record_event("s1", "start")
    assert len(store.events()) == 1


def test_concurrent_writer_and_polling_reader_never_see_locked(tmp_path: Path) -> None:
    """Two writer processes and a reader process hammer one SQLite store; nothing errors."""
    Store.open(tmp_path).close()
    writer = textwrap.dedent(f"""
        import hashlib, sys
        from inspector.store import Store
        store = Store.open({str(tmp_path)!r})
        for i in range(150):
            data = f"{{sys.argv[1]}}-{{i}}".encode()
            store.record_inspection(station=sys.argv[1], input_sha256=hashlib.sha256(data).hexdigest(),
                                    model_hash="m", verdict="fail" if i % 3 else "pass")
            if i % 10 == 0:
                store.set_station_state(sys.argv[1], "running")
    """)
    reader = textwrap.dedent(f"""
        import time
        from inspector.store import Store
        store = Store.open({str(tmp_path)!r})
        end = time.monotonic() + 60
        polls = 0
        while time.monotonic() < end:
            store.list_inspections(flagged_only=True, limit=50)
            store.count_inspections()
            store.stations()
            polls += 1
            if len(store.list_inspections(limit=1000)) >= 300:
                break
        print(polls)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, name], stderr=subprocess.PIPE, text=True)
             for name in ("w1", "w2")]
    reading = subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "locked" not in err, err
    out, err = reading.communicate(timeout=120)
    assert reading.returncode == 0 and "locked" not in err, err
    assert int(out.strip()) > 0
    store = Store.open(tmp_path)
    assert len(store.list_inspections(limit=1000)) == 300
    assert store.integrity_check() == "ok"
