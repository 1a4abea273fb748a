"""The camera feed's connection (inspector/feeds/camera.py): open, down, reconnect with backoff.

An open runs on a helper thread under `open_timeout_seconds`; a failed or hung open, or reads that
fail or hang, mark the station `camera_down` and the next attempt waits an exponential backoff with
jitter. A video file is paced at its own frame rate. A part of `CameraLoop`, apart like the store's
mixins: `CameraLoop` is the class to use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import cv2

from inspector.config import CameraConfig
from inspector.errors import CameraError
from inspector.feeds.backoff import Backoff
from inspector.feeds.camera_outage import quietly
from inspector.feeds.capture import Capture, FrameGrabber
from inspector.feeds.health import Metrics
from inspector.store import Store

log = logging.getLogger("inspector.feeds.camera")  # the feed's one logger, as before the split


class CameraConnection:
    """`CameraLoop`'s connection state machine: up (a `FrameGrabber` running) or down (waiting to retry)."""

    # The loop's own, set by `CameraLoop.__init__`.
    open_capture: Callable[[], Capture]
    store: Store
    station: str
    config: CameraConfig
    metrics: Metrics
    clock: Callable[[], float]
    file_source: bool
    backoff: Backoff
    connect_attempts: list[float]
    _grabber: FrameGrabber | None
    _down: bool
    _next_attempt: float

    def _connect(self) -> None:
        now = self.clock()
        if now < self._next_attempt:
            return
        self.connect_attempts.append(now)
        try:
            capture = self._open_with_timeout()
        except CameraError as exc:
            self._mark_down(str(exc))
            return
        pace = 0.0
        if self.file_source:
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            pace = fps if 0 < fps < 1000 else 25.0
        self._grabber = FrameGrabber(capture, self.clock, pace).start()
        self.backoff.reset()
        if self._down:
            self._down = False
            quietly(self.store.record_event, self.station, "camera_up", "frames again")
        quietly(self.store.set_station_state, self.station, "running")
        self.metrics.set_camera_up(True)

    def _open_with_timeout(self) -> Capture:
        """Open on a helper thread: a backend that ignores its open timeout must not hang the loop."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["capture"] = self.open_capture()
            except Exception as exc:  # noqa: BLE001 - reported as a camera error below
                box["error"] = exc

        opener = threading.Thread(target=work, name="camera-open", daemon=True)
        opener.start()
        opener.join(self.config.open_timeout_seconds)
        if opener.is_alive():
            raise CameraError(f"camera open timed out after {self.config.open_timeout_seconds:g} s")
        if "error" in box:
            error = box["error"]
            raise error if isinstance(error, CameraError) else CameraError(f"camera open failed: {error}")
        capture = box["capture"]
        if not capture.isOpened():
            raise CameraError("camera did not open")
        return capture

    def _mark_down(self, reason: str) -> None:
        if self._grabber is not None:
            self._grabber.retire()
            self._grabber = None
        delay = self.backoff.next_delay()
        self._next_attempt = self.clock() + delay
        self.metrics.set_camera_up(False)
        if not self._down:
            self._down = True
            log.warning("camera down: %s", reason)
            quietly(self.store.record_event, self.station, "camera_down", reason)
            quietly(self.store.set_station_state, self.station, "camera_down")
        log.info("reconnecting in %.2f s", delay)
