"""What the camera feed answers a trigger (inspector/feeds/camera.py), and its degraded health.

The answer is the verdict of the frame, or an `error` row: `not inspected: ...` when the camera gave
nothing fit to judge, or the fault the frame caused. A frame's row is committed pointing at
`camera/` before the frame moves there from the journal; while the store is away an answer waits in
the journal (camera_outage.py). A run of black, blank or stale frames raises an error event and
turns `/healthz` degraded until a good frame comes back. A part of `CameraLoop`, apart like the
store's mixins: `CameraLoop` is the class to use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inspector.config import CameraConfig
from inspector.core.results import InspectionResult
from inspector.errors import StoreError, StoreUnavailable
from inspector.feeds.camera_journal import Answer, Held, Journal, Shot
from inspector.feeds.camera_outage import quietly
from inspector.feeds.capture import NOT_INSPECTED, frame_fault
from inspector.feeds.claimed import describe
from inspector.feeds.health import Metrics
from inspector.feeds.processor import Processor, RunnerStats
from inspector.store import Store

log = logging.getLogger("inspector.feeds.camera")  # the feed's one logger, as before the split

# Refusals that say the camera or its light failed, not the board: a run of them degrades /healthz.
CAMERA_FAULTS = ("stale frame", "black frame", "blank frame")


class CameraAnswers:
    """`CameraLoop`'s answers: "not inspected", a fault's error row, the verdict; and runs of bad frames."""

    # The loop's own, set by `CameraLoop.__init__`.
    processor: Processor
    store: Store
    station: str
    config: CameraConfig
    journal: Journal
    metrics: Metrics
    stats: RunnerStats
    skipped: dict[str, int]
    _held: list[Held]
    _fault_run: int

    if TYPE_CHECKING:  # the outage's part (camera_outage.py), beside this one in `CameraLoop`
        def _hold(self, entry: Held, exc: StoreUnavailable | None) -> None: ...

    def _refuse(self, shot: Shot, kind: str, reason: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        self._answer(shot, f"{NOT_INSPECTED}: {reason}", "not_inspected")

    def _answer(self, shot: Shot, reason: str, tail: str, image_path: str = "") -> None:
        """Store (or journal, while the store is away) a trigger's error row; it is published like a verdict."""
        seq = shot.frame.seq if shot.frame is not None else 0
        answer = Answer.for_trigger(shot.trigger_id, tail, seq, image_path, reason, shot.part_id)
        log.info("%s: %s", answer.name, reason)
        error: StoreUnavailable | None = None
        if not self._held:
            try:
                self._store_answer(answer)
                return
            except StoreUnavailable as exc:
                error = exc
        try:
            path = self.journal.add(f"{answer.name}.json", answer.to_json())
        except OSError as exc:
            log.error("%s: answer lost, the store is away and the journal cannot take it (%s)", answer.name, exc)
            self.metrics.error()
            return
        self._hold(Held(path, seq, shot.started), error)

    def _store_answer(self, answer: Answer) -> None:
        # A "not inspected" answer is a row and a verdict for the line, not a quarantine event each time
        # (a black camera answers every trigger; the run of them raises its own event, see _degraded).
        self.processor.store_error(digest=answer.digest, name=answer.name, source_path=answer.source_path,
                                   image_path=answer.image_path, reason=answer.reason,
                                   event=not answer.reason.startswith(NOT_INSPECTED), part_id=answer.part_id)

    def _judge(self, image: np.ndarray, digest: str, name: str) -> tuple[InspectionResult, str, str] | str:
        """The verdict with its pictures, or why this frame cannot have one (never an exception but the store's)."""
        from inspector.core.registration import RegistrationError

        fault = frame_fault(image)
        if fault:
            return f"{name}: cannot be inspected ({fault})"
        try:
            [result] = self.processor.inspect([image])
            overlay_path, heatmap_path = self.processor.save_images(image, result, digest, name)
        except StoreError:
            raise
        except RegistrationError as exc:  # no board, another design, turned round: an error verdict, no score
            return f"{name}: the board cannot be aligned to the reference ({exc})"
        except Exception as exc:  # noqa: BLE001 - the engine, OpenCV, a drawing: this frame's error row
            return f"{name}: cannot be inspected ({describe(exc)})"
        return result, overlay_path, heatmap_path

    def _settle_frame(self, path: Path, image: np.ndarray, digest: str, seq: int, started: float,
                      part_id: str = "") -> None:
        """Inspect a journalled frame, commit its row (pointing at camera/), then move it there."""
        final = self.journal.final(path)
        outcome = self._judge(image, digest, path.name)
        if isinstance(outcome, str):
            self.processor.store_error(digest=digest, name=path.name, source_path=f"camera:{seq}",
                                       image_path=str(final), reason=outcome, part_id=part_id)
        else:
            result, overlay_path, heatmap_path = outcome
            self.processor.store_result(result, digest=digest, name=path.name, source_path=f"camera:{seq}",
                                        image_path=str(final), overlay_path=overlay_path, heatmap_path=heatmap_path,
                                        started=started, part_id=part_id)
            self.stats.processed += 1
            if result.verdict in ("fail", "review"):
                self.stats.flagged += 1
        self.journal.settle(path)
        quietly(lambda: self.store.set_station_state(self.station, "running", last_image=path.name))

    def _settle_repeat(self, entry: Held, existing: int) -> None:
        """A held frame whose bytes are stored already: answered "not inspected" unless the row is its own."""
        final = self.journal.final(entry.path)
        record = self.store.get_inspection(existing)
        if record is not None and record.image_path != str(final):  # another trigger's bytes: answer this one
            trigger_id = entry.path.name.rsplit("-", 1)[0]
            reason = f"{NOT_INSPECTED}: repeated frame: identical to stored inspection {existing}"
            self._store_answer(Answer.for_trigger(trigger_id, "not_inspected", entry.seq, str(final), reason, ""))
        self.journal.settle(entry.path)

    # ------------------------------------------------- runs of bad frames
    def _count_run(self, refusal: tuple[str, str] | None) -> None:
        """Black, blank or stale frames in a row: past `degraded_after_triggers`, say so and degrade."""
        if refusal is None:  # a frame fit to inspect ends the run
            if self._fault_run >= self.config.degraded_after_triggers > 0:
                self._recovered()
            self._fault_run = 0
        elif refusal[0] in CAMERA_FAULTS:
            self._fault_run += 1
            if self._fault_run == self.config.degraded_after_triggers:
                self._degraded(refusal[1])

    def _degraded(self, reason: str) -> None:
        detail = (f"{self._fault_run} triggers in a row not inspected (the last: {reason}); check the camera, "
                  "its light or strobe, and the stream")
        log.error("%s", detail)
        self.metrics.set_degraded(detail)
        quietly(self.store.record_event, self.station, "error", detail)

    def _recovered(self) -> None:
        detail = f"a frame fit to inspect again after {self._fault_run} triggers not inspected"
        log.info("%s", detail)
        self.metrics.set_degraded(None)
        quietly(self.store.record_event, self.station, "camera_up", detail)
