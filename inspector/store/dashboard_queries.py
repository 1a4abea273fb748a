"""Read-only queries the dashboard needs beyond the Store API (owned by the dashboard).

They read through the store's engine with their own short sessions and never write.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspector.store import schema
from inspector.store.records import InspectionRecord, ReviewRecord
from inspector.store.store import Store
from inspector.verdicts import FLAGGED_VERDICTS


def latest_reviews(store: Store, inspection_ids: Iterable[int]) -> dict[int, ReviewRecord]:
    """The newest review of each given inspection (a later review overrides an earlier one)."""
    ids = sorted(set(int(i) for i in inspection_ids))
    found: dict[int, ReviewRecord] = {}
    if not ids:
        return found
    with Session(store.engine) as session:
        # Chunked to stay under SQLite's bound-parameter limit on long histories.
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            newest = (select(func.max(schema.Review.id)).where(schema.Review.inspection_id.in_(chunk))
                      .group_by(schema.Review.inspection_id))
            for row in session.scalars(select(schema.Review).where(schema.Review.id.in_(newest))):
                found[row.inspection_id] = ReviewRecord.of(row)
    return found


def scored_history(store: Store, *, model_hash: str | None = None, since: datetime | None = None,
                   limit: int = 5000) -> list[InspectionRecord]:
    """Newest-first scored inspections (errors left out), optionally of one model only."""
    query = select(schema.Inspection).where(schema.Inspection.score.is_not(None),
                                            schema.Inspection.verdict != "error")
    if model_hash:
        query = query.where(schema.Inspection.model_hash == model_hash)
    if since is not None:
        query = query.where(schema.Inspection.created_at >= since)
    query = query.order_by(schema.Inspection.created_at.desc(), schema.Inspection.id.desc()).limit(limit)
    with Session(store.engine) as session:
        return [InspectionRecord.of(row) for row in session.scalars(query)]


def next_unreviewed(store: Store, *, after_id: int | None = None) -> int | None:
    """The newest flagged board nobody has reviewed, other than `after_id`."""
    reviewed = select(schema.Review.inspection_id)
    query = (select(schema.Inspection.id)
             .where(schema.Inspection.verdict.in_(FLAGGED_VERDICTS), schema.Inspection.id.not_in(reviewed))
             .order_by(schema.Inspection.created_at.desc(), schema.Inspection.id.desc()).limit(1))
    if after_id is not None:
        query = query.where(schema.Inspection.id != after_id)
    with Session(store.engine) as session:
        return session.scalar(query)


def latest_model_hash(store: Store) -> str | None:
    """The model of the newest inspection (the one the line runs now)."""
    query = (select(schema.Inspection.model_hash)
             .order_by(schema.Inspection.created_at.desc(), schema.Inspection.id.desc()).limit(1))
    with Session(store.engine) as session:
        return session.scalar(query)


def latest_image_threshold(store: Store, model_hash: str) -> float | None:
    """The threshold the newest inspection of a model was judged against."""
    query = (select(schema.Inspection.threshold)
             .where(schema.Inspection.model_hash == model_hash, schema.Inspection.threshold.is_not(None))
             .order_by(schema.Inspection.created_at.desc(), schema.Inspection.id.desc()).limit(1))
    with Session(store.engine) as session:
        return session.scalar(query)


def last_inspection_times(store: Store) -> dict[str, datetime]:
    """When each station last stored a verdict (its heartbeat also ticks while idle)."""
    query = select(schema.Inspection.station, func.max(schema.Inspection.created_at)).group_by(
        schema.Inspection.station)
    with Session(store.engine) as session:
        return {station: _utc(moment) for station, moment in session.execute(query) if moment is not None}


def _utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; the store writes UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
