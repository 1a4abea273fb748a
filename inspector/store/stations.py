"""Stations: one per feed, each with its own data directory (schema version 7).

A station's verdicts are published by the feed that made them (the outbox is read per station), so
two feeds must never share a station name: `claim_station` refuses a second feed while the first
one is alive (its heartbeat, `last_seen`, is recent) and records where the feed keeps its images,
which the dashboard reads them from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspector.errors import StoreError
from inspector.store import schema
from inspector.store.records import StationRecord, _aware
from inspector.store.schema import utcnow

T = TypeVar("T")
ALIVE_STATES = ("running", "camera_down", "disk_full")
# A feed writes its heartbeat at least every 30 s (folder.HEARTBEAT_SECONDS, the camera loop); one
# silent for longer than this is taken as gone (killed, the PC off) and its station may be claimed.
STATION_ALIVE_SECONDS = 120.0


class StationsMixin:
    """The station methods of `Store`."""

    def _write(self, work: Callable[[Session], T], what: str) -> T:  # pragma: no cover - Store's
        raise NotImplementedError

    def _read(self, work: Callable[[Session], T], what: str) -> T:  # pragma: no cover - Store's
        raise NotImplementedError

    def claim_station(self, station: str, *, data_dir: str, feed: str,
                      alive_seconds: float = STATION_ALIVE_SECONDS) -> StationRecord:
        """Take `station` for a feed keeping its images in `data_dir`; StoreError when another feed
        (another data directory) holds it and is alive."""
        if not station.strip():
            raise StoreError("a station needs a name")

        def work(session: Session) -> StationRecord:
            row = session.get(schema.Station, station)
            now = utcnow()
            if row is None:
                row = schema.Station(name=station, state="stopped", last_seen=now, last_image="", data_dir=data_dir,
                                     feed=feed)
                session.add(row)
                session.flush()
                return StationRecord.of(row)
            held_elsewhere = bool(row.data_dir) and row.data_dir != data_dir
            silent = now - (_aware(row.last_seen) or now)
            if held_elsewhere and row.state in ALIVE_STATES and silent < timedelta(seconds=alive_seconds):
                raise StoreError(
                    f"station {station!r} is fed by a {row.feed or 'feed'} from {row.data_dir} (alive "
                    f"{int(silent.total_seconds())} s ago); a second feed on this store must name its own "
                    "station (--station NAME)")
            row.data_dir, row.feed = data_dir, feed
            return StationRecord.of(row)

        return self._write(work, "claim_station")

    def set_station_state(self, station: str, state: str, *, last_image: str | None = None) -> None:
        """Create or update a station; also its heartbeat (`last_seen`)."""
        if state not in schema.STATION_STATES:
            raise StoreError(f"station {station}: unknown state {state!r} (known: {', '.join(schema.STATION_STATES)})")

        def work(session: Session) -> None:
            row = session.get(schema.Station, station)
            if row is None:
                row = schema.Station(name=station, state=state, last_seen=utcnow(), last_image=last_image or "")
                session.add(row)
                return
            row.state = state
            row.last_seen = utcnow()
            if last_image is not None:
                row.last_image = last_image

        self._write(work, "set_station_state")

    def stations(self) -> list[StationRecord]:
        return self._read(
            lambda s: [StationRecord.of(r) for r in s.scalars(select(schema.Station).order_by(schema.Station.name))],
            "stations")
