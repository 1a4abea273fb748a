"""`Store`: the results store API used by the runner, the camera feed and the dashboard.

SQLite (default, `<data_dir>/inspector.db`) runs in WAL mode so readers never wait for the writer;
every write transaction starts with `BEGIN IMMEDIATE`, taking the write lock up front, so two
writers queue on `busy_timeout` instead of failing half-way with "database is locked". PostgreSQL
is used when given a `postgresql+psycopg://` URL.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from inspector.config import mask_secrets
from inspector.errors import StoreError, StoreUnavailable
from inspector.store import schema
from inspector.store.migrations import migrate
from inspector.store.outbox import OutboxMixin
from inspector.store.records import (
    EventRecord,
    InspectionRecord,
    ModelRecord,
    ReviewRecord,
    ThresholdRecord,
    VerdictCounts,
)
from inspector.store.schema import utcnow
from inspector.store.stations import StationsMixin
from inspector.store.tolerances import ToleranceMixin
from inspector.store.versions import append_version
from inspector.verdicts import FLAGGED_VERDICTS, VERDICTS

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_FILENAME = "inspector.db"
BUSY_TIMEOUT_SECONDS = 30.0
# Retries on top of busy_timeout for the rare immediate SQLITE_BUSY (e.g. during WAL recovery).
WRITE_ATTEMPTS = 5
BACKOFF_INITIAL_SECONDS = 0.05
BACKOFF_MAX_SECONDS = 2.0


def resolve_url(url_or_data_dir: str | Path) -> str:
    """An SQLAlchemy URL as given, or SQLite in a data directory (a `.db` path is the file itself)."""
    text_value = str(url_or_data_dir)
    if "://" in text_value:
        return text_value
    path = Path(text_value).expanduser()
    if path.suffix not in (".db", ".sqlite", ".sqlite3"):
        path = path / DB_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def _is_transient(exc: BaseException) -> bool:
    message = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in message or "database is busy" in message or "deadlock detected" in message \
        or "could not serialize" in message


def _install_sqlite_pragmas(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before it returns, so a board moved to done/ after its commit
        # keeps its row through a power cut (NORMAL in WAL mode may lose the last commits).
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _failure(exc: DBAPIError, message: str) -> StoreError:
    """Connection-level failures mean the store is away; anything else is this request's fault."""
    unavailable = isinstance(exc, (OperationalError, InterfaceError))
    message = mask_secrets(message)
    return StoreUnavailable(message) if unavailable else StoreError(message)


class Store(OutboxMixin, ToleranceMixin, StationsMixin):
    """One results store (thread-safe: each call uses its own short session)."""

    def __init__(self, engine: Engine, where: str) -> None:
        self.engine = engine
        self.where = where
        self.dialect = engine.dialect.name
        # Writes take the SQLite write lock at BEGIN; on PostgreSQL the option is ignored.
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")

    # ----------------------------------------------------------------- opening
    @classmethod
    def open(cls, url_or_data_dir: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_SECONDS) -> Store:
        """Open (creating or migrating) the store at a URL or in a data directory."""
        url = resolve_url(url_or_data_dir)
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(mask_secrets(f"{url_or_data_dir}: not a database URL ({exc})")) from exc
        where = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
        elif parsed.get_backend_name() == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = create_engine(parsed, **kwargs)
        except (NoSuchModuleError, ImportError, ArgumentError) as exc:
            raise StoreError(f"{where}: unsupported database ({exc})") from exc
        if engine.dialect.name == "sqlite":
            _install_sqlite_pragmas(engine, busy_timeout_s)
        store = cls(engine, where)
        store._write(lambda session: migrate(session.connection(), where), "open")
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- internals
    def _write(self, work: Callable[[Session], T], what: str) -> T:
        """Run `work` in one write transaction (`BEGIN IMMEDIATE` on SQLite), retrying transient lock errors."""
        return self._transaction(self._write_engine, work, what, write=True)

    def _read(self, work: Callable[[Session], T], what: str) -> T:
        """Run `work` in one read transaction, retrying transient lock errors."""
        return self._transaction(self.engine, work, what, write=False)

    def _transaction(self, engine: Engine, work: Callable[[Session], T], what: str, *, write: bool) -> T:
        """The one retry loop of `_write` and `_read`: up to WRITE_ATTEMPTS tries with bounded backoff.

        A write lets an `IntegrityError` through (callers recognise a repeated row by it), logs each
        retry and jitters its waits; a read waits the plain backoff. Any other database error becomes
        `StoreUnavailable` (connection-level) or `StoreError`.
        """
        delay = BACKOFF_INITIAL_SECONDS
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    return work(session)
            except (OperationalError, DBAPIError) as exc:
                if write and isinstance(exc, IntegrityError):
                    raise
                if _is_transient(exc) and attempt < WRITE_ATTEMPTS:
                    if write:
                        log.warning("store %s busy during %s (attempt %d), retrying", self.where, what, attempt)
                    time.sleep(delay * (1 + random.random() / 2) if write else delay)
                    delay = min(delay * 2, BACKOFF_MAX_SECONDS)
                    continue
                raise _failure(exc, f"results store {self.where}: {what} failed ({_reason(exc)})") from exc
        raise AssertionError("unreachable")

    # ------------------------------------------------------------- inspections
    def find_inspection(self, input_sha256: str, model_hash: str) -> int | None:
        """The id of the row for these input bytes and model, if one exists."""
        return self._read(
            lambda s: s.scalar(select(schema.Inspection.id).where(
                schema.Inspection.input_sha256 == input_sha256, schema.Inspection.model_hash == model_hash)),
            "find_inspection",
        )

    def record_inspection(
        self,
        *,
        station: str,
        input_sha256: str,
        model_hash: str,
        verdict: str,
        source_path: str = "",
        source_name: str = "",
        score: float | None = None,
        threshold: float | None = None,
        regions: Sequence[dict[str, Any]] = (),
        image_path: str = "",
        overlay_path: str = "",
        heatmap_path: str = "",
        threshold_version: int | None = None,
        threshold_source: str | None = None,
        timings: dict[str, float] | None = None,
        error: str | None = None,
        created_at: datetime | None = None,
        source_name_raw: str | None = None,
        publish: bool = False,
        tolerance_version: int | None = None,
        silenced_regions: Sequence[dict[str, Any]] = (),
        part_id: str | None = None,
    ) -> int:
        """Store one verdict; the same input bytes under the same model are stored once (returns that id).

        `publish=True` also queues a new row's verdict in the outbox, in the same transaction.
        """
        if verdict not in VERDICTS:
            raise StoreError(f"inspection of {source_name or input_sha256}: unknown verdict {verdict!r}")
        if len(input_sha256) != 64:
            raise StoreError(f"inspection of {source_name}: input_sha256 must be 64 hex digits")

        def work(session: Session) -> int:
            existing = session.scalar(select(schema.Inspection.id).where(
                schema.Inspection.input_sha256 == input_sha256, schema.Inspection.model_hash == model_hash))
            if existing is not None:
                return existing
            row = schema.Inspection(
                station=station, source_path=source_path, source_name=source_name, input_sha256=input_sha256,
                created_at=created_at or utcnow(), score=None if score is None else float(score),
                threshold=None if threshold is None else float(threshold), verdict=verdict,
                regions=list(regions), image_path=image_path, overlay_path=overlay_path,
                heatmap_path=heatmap_path, model_hash=model_hash, threshold_version=threshold_version,
                threshold_source=threshold_source,
                timings={k: float(v) for k, v in (timings or {}).items()}, error=error,
                source_name_raw=source_name_raw, tolerance_version=tolerance_version or None,
                silenced_regions=list(silenced_regions) or None, part_id=part_id or None,
            )
            session.add(row)
            session.flush()
            if publish:
                session.add(schema.OutboxEntry(inspection_id=row.id, created_at=utcnow(), attempts=0))
            return row.id

        try:
            return self._write(work, "record_inspection")
        except IntegrityError:
            # Another writer (PostgreSQL has no up-front lock) stored the same input first.
            found = self.find_inspection(input_sha256, model_hash)
            if found is None:
                raise
            return found

    def get_inspection(self, inspection_id: int) -> InspectionRecord | None:
        def work(session: Session) -> InspectionRecord | None:
            row = session.get(schema.Inspection, inspection_id)
            return None if row is None else InspectionRecord.of(row)

        return self._read(work, "get_inspection")

    def list_inspections(
        self,
        *,
        flagged_only: bool = False,
        station: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        verdicts: Iterable[str] | None = None,
        unreviewed_only: bool = False,
        offset: int = 0,
    ) -> list[InspectionRecord]:
        """Newest first. `flagged_only` keeps fail/review; `unreviewed_only` drops rows with a review."""
        query = select(schema.Inspection)
        if flagged_only:
            query = query.where(schema.Inspection.verdict.in_(FLAGGED_VERDICTS))
        if verdicts is not None:
            query = query.where(schema.Inspection.verdict.in_(list(verdicts)))
        if station:
            query = query.where(schema.Inspection.station == station)
        if since is not None:
            query = query.where(schema.Inspection.created_at >= since)
        if unreviewed_only:
            reviewed = select(schema.Review.inspection_id)
            query = query.where(schema.Inspection.id.not_in(reviewed))
        query = query.order_by(schema.Inspection.created_at.desc(), schema.Inspection.id.desc())
        query = query.offset(max(0, offset)).limit(max(0, limit))
        return self._read(lambda s: [InspectionRecord.of(row) for row in s.scalars(query)], "list_inspections")

    def count_inspections(self, *, station: str | None = None, since: datetime | None = None) -> VerdictCounts:
        def work(session: Session) -> VerdictCounts:
            query = select(schema.Inspection.verdict, func.count()).group_by(schema.Inspection.verdict)
            flagged = select(func.count()).select_from(schema.Inspection).where(
                schema.Inspection.verdict.in_(FLAGGED_VERDICTS),
                schema.Inspection.id.not_in(select(schema.Review.inspection_id)))
            if station:
                query = query.where(schema.Inspection.station == station)
                flagged = flagged.where(schema.Inspection.station == station)
            if since is not None:
                query = query.where(schema.Inspection.created_at >= since)
                flagged = flagged.where(schema.Inspection.created_at >= since)
            return VerdictCounts({verdict: int(n) for verdict, n in session.execute(query)},
                                 int(session.scalar(flagged) or 0))

        return self._read(work, "count_inspections")

    # ----------------------------------------------------------------- reviews
    def add_review(self, inspection_id: int, operator: str, decision: str, defect_type: str = "",
                   comment: str = "") -> int:
        if decision not in schema.REVIEW_DECISIONS:
            raise StoreError(f"review of inspection {inspection_id}: decision must be confirm or dismiss, "
                             f"got {decision!r}")
        if not operator.strip():
            raise StoreError(f"review of inspection {inspection_id}: operator name is empty")

        def work(session: Session) -> int:
            if session.get(schema.Inspection, inspection_id) is None:
                raise StoreError(f"review: inspection {inspection_id} does not exist")
            row = schema.Review(inspection_id=inspection_id, operator=operator, decision=decision,
                                defect_type=defect_type, comment=comment, created_at=utcnow())
            session.add(row)
            session.flush()
            return row.id

        return self._write(work, "add_review")

    def reviews_for(self, inspection_id: int | None = None, *, operator: str | None = None,
                    limit: int = 1000) -> list[ReviewRecord]:
        """Reviews of one inspection (oldest first), or all recent ones when no id is given (newest first)."""
        query = select(schema.Review)
        if inspection_id is not None:
            query = query.where(schema.Review.inspection_id == inspection_id).order_by(schema.Review.id)
        else:
            query = query.order_by(schema.Review.id.desc())
        if operator:
            query = query.where(schema.Review.operator == operator)
        query = query.limit(limit)
        return self._read(lambda s: [ReviewRecord.of(r) for r in s.scalars(query)], "reviews_for")

    # ------------------------------------------------------- stations / events
    def record_event(self, station: str, kind: str, detail: str = "") -> int:
        if kind not in schema.EVENT_KINDS:
            raise StoreError(f"event for {station}: unknown kind {kind!r} (known: {', '.join(schema.EVENT_KINDS)})")

        detail = mask_secrets(detail)  # a camera or database URL never stores its password

        def work(session: Session) -> int:
            row = schema.Event(station=station, kind=kind, detail=detail, created_at=utcnow())
            session.add(row)
            session.flush()
            return row.id

        return self._write(work, "record_event")

    def events(self, *, station: str | None = None, kind: str | None = None, since: datetime | None = None,
               limit: int = 100) -> list[EventRecord]:
        """Newest first."""
        query = select(schema.Event)
        if station:
            query = query.where(schema.Event.station == station)
        if kind:
            query = query.where(schema.Event.kind == kind)
        if since is not None:
            query = query.where(schema.Event.created_at >= since)
        query = query.order_by(schema.Event.id.desc()).limit(limit)
        return self._read(lambda s: [EventRecord.of(r) for r in s.scalars(query)], "events")

    # ------------------------------------------------------ models / thresholds
    def register_model(self, model_hash: str, bundle_path: str | Path = "",
                       metadata: dict[str, Any] | None = None) -> None:
        """Record a model the first time it is seen (later calls keep the first record)."""
        def work(session: Session) -> None:
            if session.get(schema.Model, model_hash) is None:
                session.add(schema.Model(hash=model_hash, bundle_path=str(bundle_path), metadata_json=metadata or {},
                                         first_seen=utcnow()))

        try:
            self._write(work, "register_model")
        except IntegrityError:
            pass  # registered concurrently by another process: the first record stands

    def get_model(self, model_hash: str) -> ModelRecord | None:
        def work(session: Session) -> ModelRecord | None:
            row = session.get(schema.Model, model_hash)
            return None if row is None else ModelRecord.of(row)

        return self._read(work, "get_model")

    def models(self) -> list[ModelRecord]:
        return self._read(
            lambda s: [ModelRecord.of(r) for r in s.scalars(select(schema.Model).order_by(schema.Model.first_seen))],
            "models")

    def add_threshold_version(self, model_hash: str, image_threshold: float, pixel_threshold: float | None,
                              author: str, reason: str) -> ThresholdRecord:
        """Append a QA threshold change (version = previous + 1); earlier versions are never edited."""
        if not reason.strip():
            raise StoreError(f"threshold change for model {model_hash[:12]}: a reason is required")
        if not author.strip():
            raise StoreError(f"threshold change for model {model_hash[:12]}: an author is required")
        if not float(image_threshold) > 0:
            raise StoreError(f"threshold change for model {model_hash[:12]}: image threshold must be > 0, "
                             f"got {image_threshold!r}")

        def work(session: Session) -> ThresholdRecord:
            if session.get(schema.Model, model_hash) is None:
                raise StoreError(f"threshold change: model {model_hash[:12]} is not registered in the store")
            previous = session.scalars(select(schema.ThresholdVersion)
                                       .where(schema.ThresholdVersion.model_hash == model_hash)
                                       .order_by(schema.ThresholdVersion.version.desc()).limit(1)).first()
            row = schema.ThresholdVersion(
                model_hash=model_hash, version=(previous.version + 1) if previous else 1,
                image_threshold=float(image_threshold),
                pixel_threshold=None if pixel_threshold is None else float(pixel_threshold),
                author=author, reason=reason, created_at=utcnow(),
                previous_image_threshold=previous.image_threshold if previous else None,
                previous_pixel_threshold=previous.pixel_threshold if previous else None,
            )
            session.add(row)
            session.flush()
            return ThresholdRecord.of(row)

        return append_version(self._write, work, "add_threshold_version", f"threshold change for model {model_hash[:12]}")

    def current_threshold(self, model_hash: str) -> ThresholdRecord | None:
        """The latest QA threshold version of a model, or None when QA never changed it."""
        query = (select(schema.ThresholdVersion).where(schema.ThresholdVersion.model_hash == model_hash)
                 .order_by(schema.ThresholdVersion.version.desc()).limit(1))

        def work(session: Session) -> ThresholdRecord | None:
            row = session.scalars(query).first()
            return None if row is None else ThresholdRecord.of(row)

        return self._read(work, "current_threshold")

    def threshold_history(self, model_hash: str) -> list[ThresholdRecord]:
        query = (select(schema.ThresholdVersion).where(schema.ThresholdVersion.model_hash == model_hash)
                 .order_by(schema.ThresholdVersion.version))
        return self._read(lambda s: [ThresholdRecord.of(r) for r in s.scalars(query)], "threshold_history")

    # ------------------------------------------------------------------ health
    def integrity_check(self) -> str:
        """'ok' when the database is sound (SQLite `PRAGMA integrity_check`; PostgreSQL: reachable)."""
        def work(session: Session) -> str:
            if self.dialect == "sqlite":
                rows = [str(r[0]) for r in session.execute(text("PRAGMA integrity_check"))]
                return "ok" if rows == ["ok"] else "; ".join(rows)
            session.execute(text("SELECT 1"))
            return "ok"

        return self._read(work, "integrity_check")

    def schema_version(self) -> int:
        return self._read(lambda s: int(s.scalar(select(schema.SchemaVersion.version)) or 0), "schema_version")


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]


def open_store(db_url: str, data_dir: str | Path) -> Store:
    """The store a runner or dashboard uses: `db_url` when set, else SQLite in `data_dir`."""
    return Store.open(db_url or data_dir)
