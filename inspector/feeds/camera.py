"""The camera feed (`inspector camera`): inspect the latest frame of a camera or stream on a trigger.

A capture thread reads continuously and keeps only the newest frame (with its capture time and a
sequence number), so a trigger always inspects what the camera sees now. The loop never scores a
stale frame, the same frame twice, or a blank/black one. When reads fail or hang, the station goes
`camera_down` within `read_timeout_seconds`, and reconnection backs off exponentially with jitter.
A video file is paced at its own frame rate (it stands in for a camera); its end stops the feed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random as random_module
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.atomic import atomic_write_bytes
from inspector.config import CameraConfig, InspectConfig, RunnerConfig
from inspector.core.imageio import decode_image
from inspector.core.interface import Engine
from inspector.errors import CameraError, ImageLoadError, StoreError, StoreUnavailable
from inspector.feeds.backoff import STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_JITTER, STORE_RETRY_MAX_SECONDS, Backoff
from inspector.feeds.capture import (
    LOOP_SECONDS,
    Capture,
    Frame,
    FrameGrabber,
    Trigger,
    frame_problem,
    is_file_source,
    open_video_capture,
)
from inspector.feeds.housekeeping import DiskGuard
from inspector.feeds.inbox import final_path
from inspector.feeds.lineout import HealthServer
from inspector.feeds.processor import (
    PUBLISH_RETRY_POLL_SECONDS,
    Processor,
    RunnerStats,
    configure_logging,
    load_engine,
    make_processor,
)
from inspector.feeds.signals import stop_on_signals
from inspector.store import Store, open_store

log = logging.getLogger(__name__)

class CameraLoop:
    """Connection state machine + triggers around a `Processor`."""

    def __init__(self, open_capture: Callable[[], Capture], processor: Processor, store: Store,
                 runner_config: RunnerConfig, camera_config: CameraConfig, frames_dir: Path, *,
                 file_source: bool = False, max_frames: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, random: Callable[[], float] = random_module.random,
                 stop: threading.Event | None = None, stdin: Any = None) -> None:
        self.open_capture = open_capture
        self.processor = processor
        self.store = store
        self.station = runner_config.station
        self.config = camera_config
        self.frames_dir = frames_dir
        self.file_source = file_source
        self.max_frames = max_frames
        self.clock = clock
        self.sleep = sleep
        self.stop = stop or threading.Event()
        self.backoff = Backoff(camera_config.backoff_initial_seconds, camera_config.backoff_max_seconds,
                               camera_config.backoff_jitter, random)
        self.trigger = Trigger(camera_config, clock, stdin)
        self.metrics = processor.metrics
        self.stats = RunnerStats()
        self.skipped: dict[str, int] = {}
        self.connect_attempts: list[float] = []  # clock times of each open attempt (for the logs and tests)
        self._grabber: FrameGrabber | None = None
        self._down = False
        self._next_attempt = clock()
        self._last_seq = 0
        self._last_hash = ""
        # Frames saved while the results store is unreachable: (file, sequence number, capture clock),
        # inspected and stored in order once it is back.
        self._held: list[tuple[Path, int, float]] = []
        self._held_since = 0.0
        self._store_backoff = Backoff(STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_MAX_SECONDS, STORE_RETRY_JITTER, random)
        self._store_retry_at = 0.0
        self.disk = DiskGuard(frames_dir.parent, runner_config.min_free_bytes, runner_config.retention_days,
                              self._disk_state)

    # ------------------------------------------------------------ connection
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
            self._quietly(self.store.record_event, self.station, "camera_up", "frames again")
        self._quietly(self.store.set_station_state, self.station, "running")
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
            self._quietly(self.store.record_event, self.station, "camera_down", reason)
            self._quietly(self.store.set_station_state, self.station, "camera_down")
        log.info("reconnecting in %.2f s", delay)

    # --------------------------------------------------------------- frames
    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1
        log.debug("frame skipped: %s", why)

    def _take(self, frame: Frame) -> None:
        if frame.seq == self._last_seq:
            self._skip("repeated sequence number")
            return
        if self.clock() - frame.captured_at > self.config.stale_frame_seconds:
            self._skip("stale")
            self._last_seq = frame.seq
            return
        problem = frame_problem(frame.image)
        if problem:
            self._skip(problem)
            self._last_seq = frame.seq
            return
        ok, encoded = cv2.imencode(".png", frame.image)
        if not ok:
            self._skip("cannot encode")
            return
        data = encoded.tobytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._last_hash:
            self._skip("identical to the last inspected frame")
            self._last_seq = frame.seq
            return
        self._last_seq = frame.seq
        self._last_hash = digest
        started = self.clock()
        if self._held:  # the store is away: keep the frame, in order behind the others
            self._hold(self._write_frame(frame.seq, digest, data), frame.seq, started, None)
            return
        path: Path | None = None
        try:
            if self.store.find_inspection(digest, self.processor.engine.model_hash) is not None:
                self.stats.duplicates += 1
                return
            path = self._write_frame(frame.seq, digest, data)
            self._inspect_and_store(path, frame.image, digest, frame.seq, started)
        except StoreUnavailable as exc:
            self._hold(path or self._write_frame(frame.seq, digest, data), frame.seq, started, exc)

    def _write_frame(self, seq: int, digest: str, data: bytes) -> Path:
        path = self.frames_dir / f"{self.station}-{time.strftime('%Y%m%d-%H%M%S')}-{seq:06d}-{digest[:12]}.png"
        return atomic_write_bytes(path, data)

    def _inspect_and_store(self, path: Path, image: np.ndarray, digest: str, seq: int, started: float) -> None:
        from inspector.core.registration import RegistrationError

        try:
            [result] = self.processor.inspect([image])
        except RegistrationError as exc:  # no board, another design, turned round: an error verdict, no score
            self.processor.store_error(digest=digest, name=path.name, source_path=f"camera:{seq}", image_path=str(path),
                                       reason=f"{path.name}: the board cannot be aligned to the reference ({exc})")
            return
        overlay_path, heatmap_path = self.processor.save_images(image, result, digest, path.name)
        self.processor.store_result(result, digest=digest, name=path.name, source_path=f"camera:{seq}",
                                    image_path=str(path), overlay_path=overlay_path, heatmap_path=heatmap_path,
                                    started=started)
        self.stats.processed += 1
        if result.verdict in ("fail", "review"):
            self.stats.flagged += 1
        self.store.set_station_state(self.station, "running", last_image=path.name)

    # ------------------------------------------------------- store outages
    def _quietly(self, call: Callable[..., Any], *args: Any) -> None:
        """Station state and events are worth a log line, not the feed, when the store is away."""
        try:
            call(*args)
        except StoreError as exc:
            log.warning("not recorded: %s", exc)

    def _hold(self, path: Path, seq: int, started: float, exc: StoreUnavailable | None) -> None:
        """Keep a saved frame for the store (every board keeps its record, however late)."""
        if not self._held:
            self._held_since = self.clock()
            self._store_retry_at = self.clock() + self._store_backoff.next_delay()
            log.error("%s; frames are kept in %s and stored when it is back", exc, self.frames_dir)
            self.metrics.error()
        self._held.append((path, seq, started))

    def _flush_held(self, force: bool = False) -> None:
        """Inspect and store the held frames in order; on a new failure, wait longer."""
        if not self._held or (not force and self.clock() < self._store_retry_at):
            return
        count = len(self._held)
        while self._held:
            path, seq, started = self._held[0]
            try:
                data = path.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if self.store.find_inspection(digest, self.processor.engine.model_hash) is None:
                    self._inspect_and_store(path, decode_image(data, path.name), digest, seq, started)
            except StoreUnavailable as exc:
                self._store_retry_at = self.clock() + self._store_backoff.next_delay()
                log.warning("store still unreachable after %.0f s (%d frames held): %s",
                            self.clock() - self._held_since, len(self._held), exc)
                return
            except (OSError, ImageLoadError) as exc:  # the held file itself is gone: nothing left to store
                log.error("%s: held frame lost (%s)", path, exc)
            self._held.pop(0)
        self._store_backoff.reset()
        self._quietly(self.store.record_event, self.station, "error",
                      f"results store unreachable for {self.clock() - self._held_since:.0f} s; "
                      f"{count} frames were held and stored late")

    def _park_held(self) -> None:
        """Frames the store never took: out of camera/ into camera-unstored/, for `inspector watch`."""
        parked = self.frames_dir.parent / "camera-unstored"
        parked.mkdir(parents=True, exist_ok=True)
        for path, _, _ in self._held:
            try:
                os.replace(path, final_path(parked, path.name, path.stem))
            except OSError as exc:
                log.error("%s: cannot park the held frame (%s)", path, exc)
        log.error("%d frames have no stored record; they are in %s: run `inspector watch %s --once` "
                  "when the store is back", len(self._held), parked, parked)
        self._held.clear()

    # ----------------------------------------------------------------- loop
    def _disk_state(self, full: bool, detail: str) -> None:
        (log.error if full else log.info)("%s", detail)
        self.metrics.set_paused(full)
        self._quietly(self.store.record_event, self.station, "disk_full" if full else "disk_ok", detail)

    def run(self) -> RunnerStats:
        self.store.record_event(self.station, "start", "camera feed")
        self.store.set_station_state(self.station, "running")
        try:
            while not self.stop.is_set():
                self.metrics.tick()
                self._flush_held()
                if self._grabber is None:
                    self._connect()
                    if self._grabber is None:
                        self.sleep(min(0.1, max(LOOP_SECONDS, self._next_attempt - self.clock())))
                        continue
                grabber = self._grabber
                if grabber.failed:
                    self._mark_down("camera read failed")
                    continue
                if not grabber.ended and grabber.seconds_since_read() > self.config.read_timeout_seconds:
                    self._mark_down(f"no frame for {self.config.read_timeout_seconds:g} s (read hung)")
                    continue
                frame = grabber.latest()
                new_frame = frame is not None and frame.seq != self._last_seq
                self.processor.publish_pending_every(PUBLISH_RETRY_POLL_SECONDS)
                if self.trigger.fired(new_frame):
                    if frame is None:
                        self._skip("no frame yet")
                    elif not self.disk.may_take():
                        self._skip("disk nearly full")
                    else:
                        self._take(frame)
                    if self.max_frames and self.stats.processed >= self.max_frames:
                        break
                if grabber.ended and not (self.trigger.kind == "every" and new_frame):
                    log.info("end of the video file")
                    break
                if self.trigger.exhausted:
                    break
                self.sleep(LOOP_SECONDS)
        finally:
            if self._grabber is not None:
                self._grabber.retire()
            self.metrics.alive = False
            try:
                self._flush_held(force=True)
            except StoreError as exc:  # refused for good: the frames are parked below, not lost
                log.error("held frames not stored: %s", exc)
            if self._held:
                self._park_held()
            skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
            self._quietly(self.store.record_event, self.station, "stop",
                          f"{self.stats.processed} inspected; skipped: {skipped}")
            self._quietly(self.store.set_station_state, self.station, "stopped")
        return self.stats


def run_camera(source: str, bundle: Path, runner_config: RunnerConfig, camera_config: CameraConfig,
               inspect_config: InspectConfig, *, max_frames: int = 0) -> RunnerStats:
    """`inspector camera`: inspect frames from a device index, video file or RTSP/HTTP URL."""
    configure_logging()
    engine = load_engine(bundle, inspect_config)
    return run_camera_with_engine(source, engine, runner_config, camera_config, max_frames=max_frames, bundle=bundle)


def run_camera_with_engine(source: str, engine: Engine, runner_config: RunnerConfig, camera_config: CameraConfig, *,
                           max_frames: int = 0, bundle: Path | None = None,
                           open_capture: Callable[[], Capture] | None = None, **loop_options: Any) -> RunnerStats:
    """`run_camera` with an engine already loaded (tests pass a fake engine and capture)."""
    if open_capture is None and is_file_source(source) and not Path(source).is_file():
        raise CameraError(f"{source}: video file not found")
    data_dir = Path(runner_config.data_dir).resolve()
    frames_dir = data_dir / "camera"
    overlays_dir = data_dir / "overlays"
    frames_dir.mkdir(parents=True, exist_ok=True)
    overlays_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(runner_config.db_url, data_dir)
    try:
        processor = make_processor(engine, store, runner_config, overlays_dir, bundle, loop_options.pop("stream", None))
        loop = CameraLoop(open_capture or (lambda: open_video_capture(source, camera_config)), processor, store,
                          runner_config, camera_config, frames_dir, file_source=is_file_source(source),
                          max_frames=max_frames, **loop_options)
        server = None
        if runner_config.http_port:
            server = HealthServer(processor.metrics, runner_config.http_host, runner_config.http_port,
                                  stale_after_s=max(10.0, 3 * camera_config.read_timeout_seconds)).start()
        try:
            with stop_on_signals(loop.stop):
                stats = loop.run()
        finally:
            if server is not None:
                server.stop()
    finally:
        store.close()
    log.info("camera feed stopped: %d inspected (%d flagged); skipped %s", stats.processed, stats.flagged,
             loop.skipped or "none")
    return stats
