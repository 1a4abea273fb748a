"""Learned tolerance versions (schema version 6) and the reviews teaching reads.

Kept apart from store.py like the outbox; the methods use `Store`'s transaction helpers. Versions are
append-only: a new lesson or a rollback is a new, numbered version, so the audit trail says who
changed what, when and why, and the runner takes the highest version of its model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from inspector.errors import StoreError
from inspector.store import schema
from inspector.store.records import InspectionRecord, ReviewRecord, ToleranceRecord
from inspector.store.schema import utcnow
from inspector.store.versions import append_version

T = TypeVar("T")
_MAPS = (defer(schema.ToleranceVersion.factor), defer(schema.ToleranceVersion.protected),
         defer(schema.ToleranceVersion.figure))


class ToleranceMixin:
    """The learned-tolerance methods of `Store`."""

    def _write(self, work: Callable[[Session], T], what: str) -> T:  # pragma: no cover - Store's
        raise NotImplementedError

    def _read(self, work: Callable[[Session], T], what: str) -> T:  # pragma: no cover - Store's
        raise NotImplementedError

    def add_tolerance_version(self, model_hash: str, *, author: str, reason: str, through_review_id: int,
                              factor: bytes | None, protected: bytes | None, figure: bytes | None,
                              summary: dict[str, Any], restored_from: int | None = None) -> ToleranceRecord:
        """Append a version (previous + 1); earlier versions are never edited."""
        if not reason.strip() or not author.strip():
            raise StoreError(f"tolerance change for model {model_hash[:12]}: an author and a reason are required")

        def work(session: Session) -> ToleranceRecord:
            if session.get(schema.Model, model_hash) is None:
                raise StoreError(f"tolerance change: model {model_hash[:12]} is not registered in the store")
            latest = session.scalar(select(func.max(schema.ToleranceVersion.version))
                                    .where(schema.ToleranceVersion.model_hash == model_hash))
            row = schema.ToleranceVersion(
                model_hash=model_hash, version=(latest or 0) + 1, author=author, reason=reason, created_at=utcnow(),
                through_review_id=int(through_review_id), restored_from=restored_from, factor=factor,
                protected=protected, figure=figure, summary=summary)
            session.add(row)
            session.flush()
            return ToleranceRecord.of(row)

        return append_version(self._write, work, "add_tolerance_version", f"tolerance change for model {model_hash[:12]}")

    def current_tolerance(self, model_hash: str, *, with_maps: bool = False) -> ToleranceRecord | None:
        """The newest version of a model's learned tolerance (None: nothing was ever taught)."""
        query = (select(schema.ToleranceVersion).where(schema.ToleranceVersion.model_hash == model_hash)
                 .order_by(schema.ToleranceVersion.version.desc()).limit(1))
        if not with_maps:
            query = query.options(*_MAPS)

        def work(session: Session) -> ToleranceRecord | None:
            row = session.scalars(query).first()
            return None if row is None else ToleranceRecord.of(row, with_maps)

        return self._read(work, "current_tolerance")

    def tolerance_version(self, model_hash: str, version: int) -> ToleranceRecord:
        """One version with its maps and figure."""
        def work(session: Session) -> ToleranceRecord:
            row = session.scalars(select(schema.ToleranceVersion).where(
                schema.ToleranceVersion.model_hash == model_hash, schema.ToleranceVersion.version == version)).first()
            if row is None:
                raise StoreError(f"model {model_hash[:12]} has no learned tolerance version {version}")
            return ToleranceRecord.of(row, with_maps=True)

        return self._read(work, "tolerance_version")

    def tolerance_history(self, model_hash: str) -> list[ToleranceRecord]:
        """Every version, oldest first, without the maps."""
        query = (select(schema.ToleranceVersion).where(schema.ToleranceVersion.model_hash == model_hash)
                 .order_by(schema.ToleranceVersion.version).options(*_MAPS))
        return self._read(lambda s: [ToleranceRecord.of(r) for r in s.scalars(query)], "tolerance_history")

    def latest_reviews(self, model_hash: str) -> list[tuple[ReviewRecord, InspectionRecord]]:
        """Each reviewed inspection of a model with its latest review (a board reviewed twice counts
        as its last decision), oldest review first."""
        latest = (select(func.max(schema.Review.id)).join(schema.Inspection,
                                                          schema.Inspection.id == schema.Review.inspection_id)
                  .where(schema.Inspection.model_hash == model_hash).group_by(schema.Review.inspection_id))
        query = (select(schema.Review, schema.Inspection)
                 .join(schema.Inspection, schema.Inspection.id == schema.Review.inspection_id)
                 .where(schema.Review.id.in_(latest)).order_by(schema.Review.id))
        return self._read(lambda s: [(ReviewRecord.of(r), InspectionRecord.of(i)) for r, i in s.execute(query)],
                          "latest_reviews")

    def recent_inspections_of(self, model_hash: str, limit: int) -> list[InspectionRecord]:
        """The newest `limit` boards a model inspected (errors left out: they have no map), newest first."""
        query = (select(schema.Inspection).where(schema.Inspection.model_hash == model_hash,
                                                 schema.Inspection.verdict != "error")
                 .order_by(schema.Inspection.id.desc()).limit(max(0, limit)))
        return self._read(lambda s: [InspectionRecord.of(r) for r in s.scalars(query)], "recent_inspections_of")
