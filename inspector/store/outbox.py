"""The verdict outbox (schema version 5): verdicts reach the line at least once.

`record_inspection(..., publish=True)` writes the outbox entry in the inspection's own transaction,
so a committed verdict is never without one. The feeds publish pending entries after the commit and
mark each one published only when the line took it (stdout written, hook exit status 0); a failure
leaves it pending with a later `next_attempt_at` (backoff). After a crash the entries still pending
are published by the next start. A board sent again (same bytes, same model) is queued again, under
the same stable verdict id, so the line hears of it and can drop the repeat.

Publishing runs on its own thread (inspector/feeds/publisher.py), never on the inspection path; a
verdict the line refuses `max_publish_attempts` times is parked (schema version 8): kept, counted,
shown, resendable (`inspector outbox resend`), and no longer in the way of newer verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from inspector.store import schema
from inspector.store.records import InspectionRecord, _aware
from inspector.store.schema import utcnow

T = TypeVar("T")


@dataclass(frozen=True)
class PendingVerdict:
    outbox_id: int
    attempts: int
    inspection: InspectionRecord
    taken_by: tuple[str, ...] = ()  # the outputs that took it already


@dataclass(frozen=True)
class ParkedVerdict:
    outbox_id: int
    attempts: int
    last_error: str
    parked_at: datetime | None
    inspection: InspectionRecord


@dataclass(frozen=True)
class DeliveryState:
    pending: int  # waiting for the line (due now or after a retry delay)
    parked: int  # refused too often: aside until resent
    lag_seconds: float  # age of the oldest pending verdict (0 when none)


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
        """Entries due now (never taken, not parked, retry time passed), soonest due first, with their
        inspections. The due filter runs in the query, before the limit: entries waiting for a retry
        never crowd out newer verdicts."""
        moment = now or utcnow()
        entry = schema.OutboxEntry
        query = (select(entry, schema.Inspection)
                 .join(schema.Inspection, schema.Inspection.id == entry.inspection_id)
                 .where(entry.published_at.is_(None), entry.parked_at.is_(None),
                        or_(entry.next_attempt_at.is_(None), entry.next_attempt_at <= moment))
                 .order_by(func.coalesce(entry.next_attempt_at, entry.created_at), entry.id)
                 .limit(max(0, limit)))
        if station:
            query = query.where(schema.Inspection.station == station)
        return self._read(lambda session: [PendingVerdict(e.id, e.attempts, InspectionRecord.of(row),
                                                          tuple(e.taken_by or ()))
                                           for e, row in session.execute(query)], "pending_verdicts")

    def park_verdict(self, outbox_id: int, error: str, taken_by: tuple[str, ...] | list[str] = ()) -> None:
        """The line refused this verdict too often: keep it aside (undeliverable, resendable)."""
        def work(session: Session) -> None:
            found = session.get(schema.OutboxEntry, outbox_id)
            if found is not None:
                found.attempts += 1
                found.last_error = error[:2000]
                found.parked_at = utcnow()
                found.taken_by = sorted(set(found.taken_by or ()) | set(taken_by)) or None

        self._write(work, "park_verdict")

    def parked_verdicts(self, *, station: str | None = None, limit: int = 1000) -> list[ParkedVerdict]:
        """Verdicts parked as undeliverable, oldest first."""
        query = (select(schema.OutboxEntry, schema.Inspection)
                 .join(schema.Inspection, schema.Inspection.id == schema.OutboxEntry.inspection_id)
                 .where(schema.OutboxEntry.parked_at.is_not(None), schema.OutboxEntry.published_at.is_(None))
                 .order_by(schema.OutboxEntry.id).limit(max(0, limit)))
        if station:
            query = query.where(schema.Inspection.station == station)
        return self._read(lambda session: [
            ParkedVerdict(e.id, e.attempts, e.last_error or "", _aware(e.parked_at), InspectionRecord.of(row))
            for e, row in session.execute(query)], "parked_verdicts")

    def resend_parked(self, *, station: str | None = None, outbox_ids: list[int] | None = None) -> int:
        """Put parked verdicts back in the queue (attempts from zero); returns how many."""
        def work(session: Session) -> int:
            query = select(schema.OutboxEntry).where(schema.OutboxEntry.parked_at.is_not(None),
                                                    schema.OutboxEntry.published_at.is_(None))
            if outbox_ids is not None:
                query = query.where(schema.OutboxEntry.id.in_(outbox_ids))
            if station:
                query = query.where(schema.OutboxEntry.inspection_id.in_(
                    select(schema.Inspection.id).where(schema.Inspection.station == station)))
            rows = list(session.scalars(query))
            for row in rows:
                row.parked_at, row.attempts, row.next_attempt_at = None, 0, None
            return len(rows)

        return self._write(work, "resend_parked")

    def delivery_state(self, *, station: str | None = None, now: datetime | None = None) -> DeliveryState:
        """What the line has not taken yet: pending and parked counts, the oldest pending verdict's age."""
        moment = now or utcnow()
        entry = schema.OutboxEntry

        def counted(query: Any) -> Any:
            if station:
                query = query.where(entry.inspection_id.in_(
                    select(schema.Inspection.id).where(schema.Inspection.station == station)))
            return query

        def work(session: Session) -> DeliveryState:
            waiting = entry.published_at.is_(None)
            pending = session.scalar(counted(select(func.count()).select_from(entry).where(
                waiting, entry.parked_at.is_(None)))) or 0
            parked = session.scalar(counted(select(func.count()).select_from(entry).where(
                waiting, entry.parked_at.is_not(None)))) or 0
            oldest = session.scalar(counted(select(func.min(entry.created_at)).where(waiting, entry.parked_at.is_(None))))
            lag = max(0.0, (moment - (_aware(oldest) or moment)).total_seconds())
            return DeliveryState(int(pending), int(parked), lag)

        return self._read(work, "delivery_state")

    def verdict_published(self, outbox_id: int) -> None:
        def work(session: Session) -> None:
            entry = session.get(schema.OutboxEntry, outbox_id)
            if entry is not None:
                entry.published_at = utcnow()
                entry.attempts += 1

        self._write(work, "verdict_published")

    def verdict_not_taken(self, outbox_id: int, error: str, retry_at: datetime,
                          taken_by: tuple[str, ...] | list[str] = ()) -> None:
        """Some output did not take it: due again at `retry_at`, then only for the outputs not in `taken_by`."""
        def work(session: Session) -> None:
            entry = session.get(schema.OutboxEntry, outbox_id)
            if entry is not None:
                entry.attempts += 1
                entry.last_error = error[:2000]
                entry.next_attempt_at = retry_at
                entry.taken_by = sorted(set(entry.taken_by or ()) | set(taken_by)) or None

        self._write(work, "verdict_not_taken")

    def outbox_backlog(self) -> int:
        """Verdicts the line has not taken yet (parked ones included)."""
        return self._read(lambda s: int(s.scalar(select(func.count()).select_from(schema.OutboxEntry).where(
            schema.OutboxEntry.published_at.is_(None))) or 0), "outbox_backlog")

