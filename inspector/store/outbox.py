"""The verdict outbox (schema version 5): verdicts reach the line at least once.

`record_inspection(..., publish=True)` writes the outbox entry in the inspection's own transaction,
so a committed verdict is never without one. The feeds publish pending entries after the commit and
mark each one published only when the line took it (stdout written, hook exit status 0); a failure
leaves it pending with a later `next_attempt_at` (backoff). After a crash the entries still pending
are published by the next start. A board sent again (same bytes, same model) is queued again, under
the same stable verdict id, so the line hears of it and can drop the repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inspector.store import schema
from inspector.store.records import InspectionRecord
from inspector.store.schema import utcnow

T = TypeVar("T")


@dataclass(frozen=True)
class PendingVerdict:
    outbox_id: int
    attempts: int
    inspection: InspectionRecord


class OutboxMixin:
    """The outbox methods of `Store` (kept apart from store.py; they use its transaction helpers)."""

    def _write(self, work: Callable[[Session], T], what: str) -> T:  # pragma: no cover - Store's
        raise NotImplementedError

    def _read(self, work: Callable[[Session], T], what: str) -> T:  # pragma: no cover - Store's
        raise NotImplementedError

    def enqueue_verdict(self, inspection_id: int) -> bool:
        """Queue a stored verdict to be published again (a board sent again); False if one is pending."""
        def work(session: Session) -> bool:
            pending = session.scalar(select(schema.OutboxEntry.id).where(
                schema.OutboxEntry.inspection_id == inspection_id, schema.OutboxEntry.published_at.is_(None)))
            if pending is not None:
                return False
            session.add(schema.OutboxEntry(inspection_id=inspection_id, created_at=utcnow(), attempts=0))
            return True

        return self._write(work, "enqueue_verdict")

    def pending_verdicts(self, *, station: str | None = None, now: datetime | None = None,
                         limit: int = 100) -> list[PendingVerdict]:
        """Entries not yet taken by the line and due (oldest first), with their inspections."""
        moment = now or utcnow()
        query = (select(schema.OutboxEntry, schema.Inspection)
                 .join(schema.Inspection, schema.Inspection.id == schema.OutboxEntry.inspection_id)
                 .where(schema.OutboxEntry.published_at.is_(None))
                 .order_by(schema.OutboxEntry.id).limit(max(0, limit)))
        if station:
            query = query.where(schema.Inspection.station == station)

        def work(session: Session) -> list[PendingVerdict]:
            due = []
            for entry, row in session.execute(query):
                retry_at = entry.next_attempt_at
                if retry_at is not None and _aware(retry_at) > moment:
                    continue
                due.append(PendingVerdict(entry.id, entry.attempts, InspectionRecord.of(row)))
            return due

        return self._read(work, "pending_verdicts")

    def verdict_published(self, outbox_id: int) -> None:
        def work(session: Session) -> None:
            entry = session.get(schema.OutboxEntry, outbox_id)
            if entry is not None:
                entry.published_at = utcnow()
                entry.attempts += 1

        self._write(work, "verdict_published")

    def verdict_not_taken(self, outbox_id: int, error: str, retry_at: datetime) -> None:
        def work(session: Session) -> None:
            entry = session.get(schema.OutboxEntry, outbox_id)
            if entry is not None:
                entry.attempts += 1
                entry.last_error = error[:2000]
                entry.next_attempt_at = retry_at

        self._write(work, "verdict_not_taken")

    def outbox_backlog(self) -> int:
        """Verdicts the line has not taken yet."""
        return self._read(lambda s: int(s.scalar(select(func.count()).select_from(schema.OutboxEntry).where(
            schema.OutboxEntry.published_at.is_(None))) or 0), "outbox_backlog")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
