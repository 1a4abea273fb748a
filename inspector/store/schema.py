"""The results store's tables, as SQLAlchemy 2.0 ORM classes (the current schema version).

Changing a table here needs a new step in `inspector.store.migrations` so that existing stores are
brought forward; a fresh store is created from these classes directly.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATION_STATES = ("running", "stopped", "camera_down", "disk_full")
EVENT_KINDS = ("start", "stop", "camera_down", "camera_up", "error", "quarantine", "disk_full", "disk_ok")
REVIEW_DECISIONS = ("confirm", "dismiss")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    """One row: the migration step this store has reached."""

    __tablename__ = "schema_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Station(Base):
    __tablename__ = "stations"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), nullable=False, default="stopped")
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_image: Mapped[str] = mapped_column(Text, default="")
    # Schema version 7: the data directory the station's feed keeps its images in (the dashboard reads
    # them from there) and which feed it is ("watch" or "camera"); "" on rows from before.
    data_dir: Mapped[str] = mapped_column(Text, default="")
    feed: Mapped[str] = mapped_column(String(20), default="")


class Model(Base):
    __tablename__ = "models"

    hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    bundle_path: Mapped[str] = mapped_column(Text, default="")
    metadata_json: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ThresholdVersion(Base):
    """Append-only audit trail of QA threshold changes; the highest version per model is current."""

    __tablename__ = "threshold_versions"
    __table_args__ = (UniqueConstraint("model_hash", "version", name="uq_threshold_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_hash: Mapped[str] = mapped_column(String(128), ForeignKey("models.hash"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    image_threshold: Mapped[float] = mapped_column(Float, nullable=False)
    pixel_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    previous_image_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    previous_pixel_threshold: Mapped[float | None] = mapped_column(Float, nullable=True)


class ToleranceVersion(Base):
    """Append-only versions of a model's learned per-position tolerance (schema version 6): what QA
    taught the station from dismissed false alarms, with the lessons, the refusals and the preview
    that shaped it. The highest version per model is current; a rollback is a new version."""

    __tablename__ = "tolerance_versions"
    __table_args__ = (UniqueConstraint("model_hash", "version", name="uq_tolerance_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_hash: Mapped[str] = mapped_column(String(128), ForeignKey("models.hash"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    author: Mapped[str] = mapped_column(String(200), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Reviews up to this id have been considered (dismissals learned or refused, confirmations protected).
    through_review_id: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    restored_from: Mapped[int | None] = mapped_column(Integer, nullable=True)  # a rollback: the version copied
    factor: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # npz; None = no widening
    protected: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # npz; confirmed defects' places
    figure: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # PNG over the reference board
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # lessons, refusals, preview


class Inspection(Base):
    __tablename__ = "inspections"
    __table_args__ = (UniqueConstraint("input_sha256", "model_hash", name="uq_inspection_input_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station: Mapped[str] = mapped_column(String(200), nullable=False)
    source_path: Mapped[str] = mapped_column(Text, default="")
    source_name: Mapped[str] = mapped_column(Text, default="")
    input_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    verdict: Mapped[str] = mapped_column(String(10), nullable=False)
    regions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    image_path: Mapped[str] = mapped_column(Text, default="")
    overlay_path: Mapped[str] = mapped_column(Text, default="")
    heatmap_path: Mapped[str] = mapped_column(Text, default="")
    model_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    threshold_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # "bundle" (threshold_version is the bundle's calibration version) or "qa" (a threshold_versions
    # row); None on rows stored before schema version 3.
    threshold_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    timings: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The file name's exact bytes (hex) when source_name had to escape them (not UTF-8, control
    # characters); None when source_name is the name itself. Schema version 4.
    source_name_raw: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The learned tolerance version applied (None: none, or a row from before schema version 6) and
    # the regions it kept under the region line (shown to operators, never counted in the verdict).
    tolerance_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    silenced_regions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # Schema version 9: the part id the line's trigger carried (OPC UA, MQTT), None when it gave none.
    part_id: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Review(Base):
    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(Integer, ForeignKey("inspections.id"), nullable=False)
    operator: Mapped[str] = mapped_column(String(200), nullable=False)
    decision: Mapped[str] = mapped_column(String(10), nullable=False)
    defect_type: Mapped[str] = mapped_column(String(100), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxEntry(Base):
    """A verdict to publish on the line (schema version 5): written in the inspection's own
    transaction, deleted from the queue only once the line took it (`published_at`)."""

    __tablename__ = "verdict_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    inspection_id: Mapped[int] = mapped_column(Integer, ForeignKey("inspections.id"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Schema version 8: set when the line refused the verdict `runner.max_publish_attempts` times: it
    # is parked (kept, shown, resendable) instead of being retried ahead of newer verdicts forever.
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Schema version 9: the outputs (stdout, hook, mqtt, opcua) that took the verdict already: a retry
    # goes only to the others, so a PLC that acknowledged a result is not asked again.
    taken_by: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)


OUTBOX_INDEX = Index("ix_verdict_outbox_pending", OutboxEntry.published_at, OutboxEntry.id)


# Added by migration step 2: the dashboard lists newest-first, filtered by verdict and station.
DASHBOARD_INDEXES = (
    Index("ix_inspections_created_at", Inspection.created_at),
    Index("ix_inspections_verdict_created_at", Inspection.verdict, Inspection.created_at),
    Index("ix_inspections_station_created_at", Inspection.station, Inspection.created_at),
    Index("ix_reviews_inspection_id", Review.inspection_id),
    Index("ix_events_station_created_at", Event.station, Event.created_at),
)
