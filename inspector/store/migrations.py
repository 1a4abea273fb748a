"""Versioned schema migrations, applied in order when a store is opened.

A fresh store is created from the current ORM classes and stamped with the latest version (the
steps exist to bring *older* stores forward). A store newer than this code is refused rather than
written with a schema this code does not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, insert, inspect, select, text, update

from inspector.errors import StoreError
from inspector.store.schema import DASHBOARD_INDEXES, OUTBOX_INDEX, Base, SchemaVersion, utcnow

# Tables of schema version 1, in dependency order (later steps must not edit this list).
_V1_TABLES = ("schema_version", "stations", "models", "threshold_versions", "inspections", "reviews", "events")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_v1_tables(conn: Connection) -> None:
    tables = [Base.metadata.tables[name] for name in _V1_TABLES]
    Base.metadata.create_all(conn, tables=tables, checkfirst=True)


def _add_dashboard_indexes(conn: Connection) -> None:
    for index in DASHBOARD_INDEXES:
        index.create(conn, checkfirst=True)


def _add_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    """`ALTER TABLE table ADD COLUMN name ddl` for each of `columns` the table lacks, in their order: a
    migration interrupted half-way is completed by running it again."""
    present = {column["name"] for column in inspect(conn).get_columns(table)}
    for name, ddl in columns.items():
        if name not in present:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}"))


def _add_threshold_source(conn: Connection) -> None:
    _add_columns(conn, "inspections", {"threshold_source": "VARCHAR(16)"})


def _add_source_name_raw(conn: Connection) -> None:
    _add_columns(conn, "inspections", {"source_name_raw": "TEXT"})


def _add_verdict_outbox(conn: Connection) -> None:
    Base.metadata.create_all(conn, tables=[Base.metadata.tables["verdict_outbox"]], checkfirst=True)
    OUTBOX_INDEX.create(conn, checkfirst=True)


def _add_learned_tolerance(conn: Connection) -> None:
    Base.metadata.create_all(conn, tables=[Base.metadata.tables["tolerance_versions"]], checkfirst=True)
    _add_columns(conn, "inspections", {"tolerance_version": "INTEGER", "silenced_regions": "JSON"})


def _add_station_home(conn: Connection) -> None:
    _add_columns(conn, "stations", {"data_dir": "TEXT DEFAULT ''", "feed": "VARCHAR(20) DEFAULT ''"})


def _add_outbox_parking(conn: Connection) -> None:
    timestamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    _add_columns(conn, "verdict_outbox", {"parked_at": timestamp})


def _add_part_ids_and_outputs(conn: Connection) -> None:
    _add_columns(conn, "inspections", {"part_id": "VARCHAR(200)"})
    _add_columns(conn, "verdict_outbox", {"taken_by": "JSON"})


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", _create_v1_tables),
    Migration(2, "indexes for newest-first dashboard queries", _add_dashboard_indexes),
    Migration(3, "inspections.threshold_source: which counter threshold_version belongs to", _add_threshold_source),
    Migration(4, "inspections.source_name_raw: the exact bytes of a file name that is not UTF-8", _add_source_name_raw),
    Migration(5, "verdict_outbox: verdicts published at least once, after commit", _add_verdict_outbox),
    Migration(6, "tolerance_versions and inspections.tolerance_version/silenced_regions: learning from review",
              _add_learned_tolerance),
    Migration(7, "stations.data_dir and stations.feed: one station, one data directory, one feed", _add_station_home),
    Migration(8, "verdict_outbox.parked_at: verdicts the line refused too often wait aside, resendable",
              _add_outbox_parking),
    Migration(9, "inspections.part_id and verdict_outbox.taken_by: part ids from the line, delivery per output",
              _add_part_ids_and_outputs),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int | None:
    """The store's schema version, or None for an empty database."""
    names = set(inspect(conn).get_table_names())
    if "schema_version" not in names:
        if names & set(_V1_TABLES):
            raise StoreError(
                f"database has tables ({', '.join(sorted(names & set(_V1_TABLES)))}) but no schema_version: "
                "it was not created by board-inspector; use an empty database"
            )
        return None
    return conn.execute(select(SchemaVersion.version).where(SchemaVersion.id == 1)).scalar_one_or_none()


def _stamp(conn: Connection, version: int) -> None:
    updated = conn.execute(
        update(SchemaVersion).where(SchemaVersion.id == 1).values(version=version, applied_at=utcnow())
    )
    if updated.rowcount == 0:
        conn.execute(insert(SchemaVersion).values(id=1, version=version, applied_at=utcnow()))


def migrate(conn: Connection, where: str) -> int:
    """Bring the schema to LATEST_VERSION inside the caller's (write-locked) transaction."""
    if conn.dialect.name == "postgresql":
        # Two processes opening a fresh store at once must not both create tables.
        conn.execute(text("SELECT pg_advisory_xact_lock(5150001)"))
    version = current_version(conn)
    if version is None:
        Base.metadata.create_all(conn, checkfirst=True)
        _stamp(conn, LATEST_VERSION)
        return LATEST_VERSION
    if version > LATEST_VERSION:
        raise StoreError(
            f"{where}: schema version {version} is newer than this board-inspector understands "
            f"(up to {LATEST_VERSION}); upgrade board-inspector before opening it"
        )
    for step in MIGRATIONS:
        if step.version > version:
            step.apply(conn)
            _stamp(conn, step.version)
    return LATEST_VERSION
