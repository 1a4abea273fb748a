"""The camera feed through a results-store outage (inspector/feeds/camera.py): hold, then replay.

While the store is away each trigger's journal entry (its frame, or its answer) is held in trigger
order; once the store is back they are stored in that order, and what the last run left in the
journal is stored before any new trigger. A part of `CameraLoop`, apart like the store's mixins:
`CameraLoop` is the class to use.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inspector.errors import StoreError, StoreUnavailable
from inspector.feeds.backoff import Backoff
from inspector.feeds.camera_journal import Answer, Held, Journal, entry_seq
from inspector.feeds.health import Metrics
from inspector.feeds.processor import Processor
from inspector.store import Store

log = logging.getLogger("inspector.feeds.camera")  # the feed's one logger, as before the split


def quietly(call: Callable[..., Any], *args: Any) -> None:
    """Station state and events are worth a log line, not the feed, when the store is away."""
    try:
        call(*args)
    except StoreError as exc:
        log.warning("not recorded: %s", exc)


class CameraOutage:
    """`CameraLoop`'s hold through a store outage and its replay of the journal."""

    # The loop's own, set by `CameraLoop.__init__`.
    processor: Processor
    store: Store
    station: str
    journal: Journal
    metrics: Metrics
    clock: Callable[[], float]
    _held: list[Held]  # journal entries waiting for the results store, in trigger order
    _held_since: float
    _held_why: str
    _store_backoff: Backoff
    _store_retry_at: float

    if TYPE_CHECKING:  # the answers' part (camera_answers.py), beside this one in `CameraLoop`
        def _store_answer(self, answer: Answer) -> None: ...

        def _settle_frame(self, path: Path, image: np.ndarray, digest: str, seq: int, started: float,
                          part_id: str = "") -> None: ...

        def _settle_repeat(self, entry: Held, existing: int) -> None: ...

    def _hold(self, entry: Held, exc: StoreUnavailable | None) -> None:
        """Keep a journalled trigger for the store (every trigger keeps its answer, however late)."""
        if not self._held:
            self._held_since = self.clock()
            self._held_why = ""
            self._store_retry_at = self.clock() + self._store_backoff.next_delay()
            log.error("%s; triggers are journalled in %s and stored when it is back", exc, self.journal.folder)
            self.metrics.error()
        self._held.append(entry)

    def _flush_held(self, force: bool = False) -> None:
        """Store the held triggers in order; on a new failure, wait longer."""
        if not self._held or (not force and self.clock() < self._store_retry_at):
            return
        count = len(self._held)
        while self._held:
            try:
                self._replay(self._held[0])
            except StoreUnavailable as exc:
                self._store_retry_at = self.clock() + self._store_backoff.next_delay()
                log.warning("store still unreachable after %.0f s (%d triggers held): %s",
                            self.clock() - self._held_since, len(self._held), exc)
                return
            self._held.pop(0)
        self._store_backoff.reset()
        why = self._held_why or f"results store unreachable for {self.clock() - self._held_since:.0f} s"
        quietly(self.store.record_event, self.station, "error", f"{why}; {count} triggers were held and stored late")

    def _replay(self, entry: Held) -> None:
        if entry.path.suffix == ".json":
            self._replay_answer(entry.path)
        else:
            self._replay_frame(entry)

    def _replay_answer(self, path: Path) -> None:
        try:
            answer = Answer.from_json(path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:  # written atomically: gone or foreign, never half
            log.error("%s: journalled answer unreadable, dropped (%s)", path, exc)
            return
        self._store_answer(answer)
        self.journal.settle(path)

    def _replay_frame(self, entry: Held) -> None:
        try:
            data = entry.path.read_bytes()
        except OSError as exc:
            log.error("%s: held frame lost (%s)", entry.path, exc)
            return
        digest = hashlib.sha256(data).hexdigest()
        existing = self.store.find_inspection(digest, self.processor.engine.model_hash)
        if existing is not None:  # committed before a kill, or the same bytes as an older frame
            self._settle_repeat(entry, existing)
            return
        # Unchanged, as captured: a 16-bit or 4-channel frame is judged as it was, not as a decoder converts it.
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        part_id = entry.part_id or self.journal.part_of(entry.path)
        if image is None:
            self.processor.store_error(digest=digest, name=entry.path.name, source_path=f"camera:{entry.seq}",
                                       image_path=str(self.journal.final(entry.path)),
                                       reason=f"{entry.path.name}: held frame cannot be decoded", part_id=part_id)
            self.journal.settle(entry.path)
            return
        self._settle_frame(entry.path, image, digest, entry.seq, entry.started, part_id)

    def _resume_journal(self) -> None:
        """What the last run left in the journal is stored before any new trigger."""
        left = self.journal.entries()
        if not left:
            return
        log.info("%d triggers left unstored by the last run in %s: storing them first", len(left), self.journal.folder)
        now = self.clock()
        self._held = [Held(path, entry_seq(path.name), now) for path in left]
        self._held_since = now
        self._held_why = f"{len(left)} triggers were left unstored by the last run"
        self._flush_held(force=True)
