"""Learned tolerance versions in the store (schema version 6), SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from inspector.errors import StoreError
from inspector.store import Store
from inspector.store.migrations import LATEST_VERSION

MODEL = "cd" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = str(tmp_path / "data") if request.param == "sqlite" else request.getfixturevalue("pg_schema_url")
    opened = Store.open(url)
    opened.register_model(MODEL, "/bundles/fixtured")
    yield opened
    opened.close()


def test_versions_are_numbered_kept_whole_and_read_without_their_maps(store: Store) -> None:
    assert store.current_tolerance(MODEL) is None and store.tolerance_history(MODEL) == []
    first = store.add_tolerance_version(MODEL, author="quinn", reason="glints", through_review_id=7,
                                        factor=b"factor-1", protected=b"guard-1", figure=b"png-1",
                                        summary={"lessons": [{"inspection_id": 3}]})
    second = store.add_tolerance_version(MODEL, author="quinn", reason="roll back to version 0: test",
                                         through_review_id=7, factor=None, protected=b"guard-1", figure=None,
                                         summary={}, restored_from=0)
    assert (first.version, second.version) == (1, 2)
    current = store.current_tolerance(MODEL)
    assert current is not None and current.version == 2 and current.restored_from == 0 and current.factor is None
    assert store.current_tolerance(MODEL, with_maps=True).protected == b"guard-1"  # type: ignore[union-attr]
    kept = store.tolerance_version(MODEL, 1)
    assert (kept.factor, kept.protected, kept.figure, kept.through_review_id) == (b"factor-1", b"guard-1", b"png-1", 7)
    assert kept.summary == {"lessons": [{"inspection_id": 3}]}
    assert [(v.version, v.factor) for v in store.tolerance_history(MODEL)] == [(1, None), (2, None)]
    with pytest.raises(StoreError, match="no learned tolerance version 9"):
        store.tolerance_version(MODEL, 9)
    with pytest.raises(StoreError, match="reason"):
        store.add_tolerance_version(MODEL, author="quinn", reason=" ", through_review_id=0, factor=None,
                                    protected=None, figure=None, summary={})
    with pytest.raises(StoreError, match="not registered"):
        store.add_tolerance_version("ef" * 32, author="quinn", reason="x", through_review_id=0, factor=None,
                                    protected=None, figure=None, summary={})


def test_latest_reviews_take_each_boards_last_decision(store: Store) -> None:
    ids = [store.record_inspection(station="s", input_sha256=f"{n:064d}", model_hash=MODEL, verdict="review",
                                   image_path=f"/data/{n}.png") for n in range(3)]
    store.add_review(ids[0], "olga", "dismiss")
    store.add_review(ids[1], "olga", "dismiss")
    store.add_review(ids[0], "quinn", "confirm", "burn")  # looked again: a defect after all
    latest = store.latest_reviews(MODEL)
    assert [(r.inspection_id, r.decision) for r, _ in latest] == [(ids[1], "dismiss"), (ids[0], "confirm")]
    assert latest[1][1].image_path == "/data/0.png"
    assert [r.id for r in store.recent_inspections_of(MODEL, 2)] == [ids[2], ids[1]]


def test_inspections_keep_the_tolerance_version_and_the_silenced_regions(store: Store) -> None:
    silenced = [{"bbox": [1, 2, 3, 4], "area": 4, "peak": 1.2, "mean": 1.1, "centroid": [2.0, 3.0], "score": 1.2}]
    taught = store.record_inspection(station="s", input_sha256="a" * 64, model_hash=MODEL, verdict="pass",
                                     tolerance_version=3, silenced_regions=silenced)
    plain = store.record_inspection(station="s", input_sha256="b" * 64, model_hash=MODEL, verdict="pass")
    row, other = store.get_inspection(taught), store.get_inspection(plain)
    assert row is not None and row.tolerance_version == 3 and row.silenced_regions == silenced
    assert other is not None and other.tolerance_version is None and other.silenced_regions == []


def test_a_version_5_store_gains_the_tolerance_table_and_columns(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "data")
    store.register_model(MODEL)
    store.record_inspection(station="s", input_sha256="a" * 64, model_hash=MODEL, verdict="pass", score=0.2)
    with store.engine.begin() as conn:  # back to schema version 5
        conn.execute(text("DROP TABLE tolerance_versions"))
        conn.execute(text("ALTER TABLE inspections DROP COLUMN tolerance_version"))
        conn.execute(text("ALTER TABLE inspections DROP COLUMN silenced_regions"))
        conn.execute(text("UPDATE schema_version SET version = 5"))
    store.close()
    migrated = Store.open(tmp_path / "data")
    assert migrated.schema_version() == LATEST_VERSION
    with migrated.engine.connect() as conn:
        assert "tolerance_versions" in inspect(conn).get_table_names()
    (row,) = migrated.list_inspections()
    assert row.score == 0.2 and row.tolerance_version is None and row.silenced_regions == []
    assert migrated.add_tolerance_version(MODEL, author="q", reason="r", through_review_id=0, factor=None,
                                          protected=None, figure=None, summary={}).version == 1
    migrated.close()
