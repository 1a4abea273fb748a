"""Publishing verdicts to the line on a thread of its own: inspection never waits for the line.

The inspection path commits a row with its outbox entry and wakes the publisher; the publisher
drains the station's due entries, soonest due first, through `LineOut` (JSON line, hook). An entry
the line does not take falls due again after a backoff (1 s doubling to 60 s); after
`runner.max_publish_attempts` refusals it is parked: kept in the store, counted on /healthz and
/metrics, an event says why, and `inspector outbox resend` puts it back. A slow or refusing PLC
bridge therefore costs only its own verdicts' delay, never the boards behind them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from inspector.errors import StoreError
from inspector.feeds.health import Metrics
from inspector.feeds.lineout import LineOut
from inspector.store import Store
from inspector.store.schema import utcnow

log = logging.getLogger(__name__)

PUBLISH_RETRY_INITIAL_SECONDS = 1.0
PUBLISH_RETRY_MAX_SECONDS = 60.0
PUBLISH_POLL_SECONDS = 0.5  # an idle publisher looks for verdicts due again this often
STOP_TIMEOUT_SECONDS = 30.0
REPORT_SECONDS = 2.0  # the store's own count of what the line owes is read at most this often
DRAIN_SECONDS = 10.0  # a clean stop publishes what is due for at most this long; the rest waits in the store


class Publisher:
    """Drains one station's outbox; `start` runs it on a daemon thread, `publish_due` is one pass."""

    def __init__(self, store: Store, station: str, lineout: LineOut, metrics: Metrics, *,
                 to_message: Callable[[Any], dict[str, Any]], max_attempts: int,
                 wall: Callable[[], datetime] = utcnow, poll_seconds: float = PUBLISH_POLL_SECONDS) -> None:
        self.store = store
        self.station = station
        self.lineout = lineout
        self.metrics = metrics
        self.to_message = to_message  # a PendingVerdict's inspection -> the published JSON
        self.max_attempts = max(1, max_attempts)
        self.wall = wall
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one pass at a time (the thread, or a caller draining at stop)
        self._reported = -float("inf")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Publisher:
        if not self.running:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name=f"publisher-{self.station}", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, *, drain: bool = False, timeout: float = STOP_TIMEOUT_SECONDS,
             drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop the thread (after the delivery in hand); `drain`: one last pass for what is due now, for at
        most `drain_seconds` (a line that does not answer must not hold a stopping runner)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("publisher of %s still busy with the line after %.0f s; its verdicts stay pending",
                            self.station, timeout)
                return
            self._thread = None
        if drain:
            self.publish_due(deadline=time.monotonic() + drain_seconds)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                taken = self.publish_due()
            except Exception:  # noqa: BLE001 - the publisher must outlive any one verdict's surprise
                log.exception("publishing verdicts of %s failed; trying again", self.station)
                taken = 0
            if taken == 0:  # nothing more due now: wait for a new verdict or the next retry time
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def publish_due(self, deadline: float | None = None) -> int:
        """Publish the verdicts due now, soonest due first, until `deadline` (time.monotonic) if given;
        returns how many the line took."""
        with self._lock:
            try:
                pending = self.store.pending_verdicts(station=self.station, now=self.wall())
            except StoreError as exc:
                log.warning("outbox not read (%s); pending verdicts are published later", exc)
                return 0
            taken = 0
            for entry in pending:
                if self._stopping.is_set() and threading.current_thread() is self._thread:
                    break  # stopping: what is left stays pending for the drain or the next start
                if deadline is not None and time.monotonic() > deadline:
                    break
                try:
                    taken += self._deliver(entry)
                except StoreError as exc:  # published again later: at least once, never lost
                    log.warning("outbox entry %d not updated (%s)", entry.outbox_id, exc)
                    break
            self._report()
            return taken

    def _deliver(self, entry: Any) -> int:
        taken, problem = self.lineout.deliver_to(self.to_message(entry.inspection), entry.taken_by)
        if problem is None:
            self.store.verdict_published(entry.outbox_id)
            self.metrics.verdict_taken()
            return 1
        if entry.attempts + 1 >= self.max_attempts:
            self.store.park_verdict(entry.outbox_id, problem, taken)
            detail = (f"verdict of {entry.inspection.source_name or entry.inspection.id} (#{entry.inspection.id}) "
                      f"parked after {entry.attempts + 1} refusals: {problem}; resend with `inspector outbox resend`")
            log.error("%s", detail)
            self.metrics.error()
            self.store.record_event(self.station, "error", detail[:2000])
            self._reported = -float("inf")  # a parked verdict shows on /healthz at the end of this pass
            return 0
        delay = min(PUBLISH_RETRY_MAX_SECONDS, PUBLISH_RETRY_INITIAL_SECONDS * 2 ** entry.attempts)
        self.store.verdict_not_taken(entry.outbox_id, problem, self.wall() + timedelta(seconds=delay), taken)
        return 0

    def _report(self) -> None:
        """The store's count for /healthz and /metrics (the in-memory one moves with each verdict between)."""
        if time.monotonic() - self._reported < REPORT_SECONDS:
            return
        self._reported = time.monotonic()
        try:
            state = self.store.delivery_state(station=self.station, now=self.wall())
        except StoreError:
            return
        self.metrics.set_delivery(state.pending, state.parked, state.lag_seconds)
