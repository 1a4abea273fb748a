"""The camera feed (`inspector camera`): inspect the latest frame of a camera or stream on a trigger.

A capture thread reads continuously and keeps only the newest frame (with its capture time and a
sequence number), so a trigger always inspects what the camera sees now.

Every trigger gets exactly one answer, stored and published like every verdict: the verdict, or an
`error` row saying why there is none: `not inspected: ...` when the camera gave nothing fit to judge
(no new frame, a stale, black, blank or repeated one), or the fault the frame caused (its format, the
engine, OpenCV, a disk that cannot take it). A run of black, blank or stale frames (a failed strobe,
a frozen stream) raises an error event and turns `/healthz` degraded until a good frame comes back.

Each frame is written durably into `camera-unstored/` (the journal) before its row is committed,
then moved to `camera/`. While the results store is away the frames, and the answers it could not
take, stay in the journal in order; they are stored once it is back, or first thing at the next
start after a stop, a kill or a power cut.

When reads fail or hang, the station goes `camera_down` within `read_timeout_seconds`, and
reconnection backs off exponentially with jitter. A video file is paced at its own frame rate (it
stands in for a camera); its end stops the feed.
"""

from __future__ import annotations

import hashlib
import logging
import random as random_module
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config import CameraConfig, InspectConfig, LineoutConfig, RunnerConfig
from inspector.core.interface import Engine
from inspector.errors import CameraError, StoreError, StoreUnavailable
from inspector.feeds.backoff import STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_JITTER, STORE_RETRY_MAX_SECONDS, Backoff
from inspector.feeds.camera_answers import CameraAnswers
from inspector.feeds.camera_connection import CameraConnection
from inspector.feeds.camera_journal import JOURNAL_FOLDER, Held, Journal, Shot
from inspector.feeds.camera_outage import CameraOutage, quietly
from inspector.feeds.capture import (
    LOOP_SECONDS,
    Capture,
    Frame,
    FrameGrabber,
    LineTriggers,
    Trigger,
    frame_fault,
    frame_problem,
    is_file_source,
    open_video_capture,
)
from inspector.feeds.claimed import describe
from inspector.feeds.health import HealthServer
from inspector.feeds.housekeeping import DiskGuard
from inspector.feeds.inbox import exclusive_lock
from inspector.feeds.processor import (
    Processor,
    RunnerStats,
    configure_logging,
    load_engine,
    make_processor,
)
from inspector.feeds.signals import stop_on_signals
from inspector.feeds.stations import claim_station
from inspector.store import Store, open_store

log = logging.getLogger(__name__)

# The store takes a station silent for 120 s as gone and lets another feed claim it (store/stations.py).
HEARTBEAT_SECONDS = 10.0


class CameraLoop(CameraConnection, CameraAnswers, CameraOutage):
    """Connection state machine + triggers around a `Processor`.

    Its parts are apart like the store's mixins: the connection (camera_connection.py), the answers
    and runs of bad frames (camera_answers.py), the hold through a store outage and the replay of the
    journal (camera_outage.py); here the state they share, a trigger's path, and the loop.
    """

    def __init__(self, open_capture: Callable[[], Capture], processor: Processor, store: Store,
                 runner_config: RunnerConfig, camera_config: CameraConfig, frames_dir: Path, *,
                 file_source: bool = False, max_frames: int = 0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, random: Callable[[], float] = random_module.random,
                 stop: threading.Event | None = None, stdin: Any = None, line: LineTriggers | None = None) -> None:
        self.open_capture = open_capture
        self.processor = processor
        self.store = store
        self.station = runner_config.station
        self.config = camera_config
        self.frames_dir = frames_dir
        self.journal = Journal(frames_dir.parent / JOURNAL_FOLDER, frames_dir)
        self.file_source = file_source
        self.max_frames = max_frames
        self.clock = clock
        self.sleep = sleep
        self.stop = stop or threading.Event()
        self.backoff = Backoff(camera_config.backoff_initial_seconds, camera_config.backoff_max_seconds,
                               camera_config.backoff_jitter, random)
        self.trigger = Trigger(camera_config, clock, stdin, line)
        self.metrics = processor.metrics
        self.stats = RunnerStats()
        self.skipped: dict[str, int] = {}  # triggers answered "not inspected", by kind (for the stop event)
        self.connect_attempts: list[float] = []  # clock times of each open attempt (for the logs and tests)
        self._grabber: FrameGrabber | None = None
        self._down = False
        self._next_attempt = clock()
        self._last_seq = 0
        self._last_hash = ""
        self._last_stamp = 0  # microseconds of the last trigger id (kept strictly increasing)
        self._fault_run = 0  # triggers in a row refused for a black, blank or stale frame
        self._last_heartbeat = -float("inf")
        # Journal entries waiting for the results store, in trigger order.
        self._held: list[Held] = []
        self._held_since = 0.0
        self._held_why = ""
        self._store_backoff = Backoff(STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_MAX_SECONDS, STORE_RETRY_JITTER, random)
        self._store_retry_at = 0.0
        self.disk = DiskGuard(frames_dir.parent, runner_config.min_free_bytes, runner_config.retention_days,
                              self._disk_state)

    # ------------------------------------------------------------- triggers
    def _shot(self, frame: Frame | None) -> Shot:
        micros = max(time.time_ns() // 1000, self._last_stamp + 1)
        self._last_stamp = micros
        # UTC, not local time: a clock set back by daylight saving must not reorder the journal.
        moment = datetime.fromtimestamp(micros // 1_000_000, timezone.utc)
        seq = frame.seq if frame is not None else 0
        return Shot(frame, f"{self.station}-{moment:%Y%m%d-%H%M%S}-{micros % 1_000_000:06d}-{seq:06d}", self.clock(),
                    self.trigger.part_id)

    def _take(self, frame: Frame | None) -> None:
        """Answer one trigger: a verdict, or an error row saying why not."""
        shot = self._shot(frame)
        refusal = self._refusal(frame)
        self._count_run(refusal)
        if refusal is not None:
            self._refuse(shot, *refusal)
            return
        assert frame is not None  # a trigger without a frame is refused above
        try:
            ok, encoded = cv2.imencode(".png", frame.image)
            if not ok:
                raise CameraError("OpenCV cannot encode it as PNG")
        except Exception as exc:  # noqa: BLE001 - whatever a frame does to the encoder costs this frame only
            self._answer(shot, f"frame {frame.seq}: cannot be inspected ({frame_fault(frame.image) or describe(exc)})",
                         "error")
            return
        data = encoded.tobytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._last_hash:
            self._refuse(shot, "identical frame", "repeated frame: identical to the last inspected frame")
            return
        self._last_hash = digest
        self._take_frame(shot, frame.image, data, digest)

    def _refusal(self, frame: Frame | None) -> tuple[str, str] | None:
        """(kind, reason) when this trigger's frame is not to be inspected, else None."""
        if frame is None:
            return "no frame", "no frame from the camera yet"
        if not self.disk.may_take():
            return "disk nearly full", "disk nearly full (runner.min_free_bytes): the frame cannot be kept"
        if frame.seq == self._last_seq:
            return "no new frame", "repeated frame: no new frame since the last trigger"
        self._last_seq = frame.seq
        age, limit = self.clock() - frame.captured_at, self.config.stale_frame_seconds
        if age > limit:
            return "stale frame", f"stale frame: {age:.1f} s old (camera.stale_frame_seconds = {limit:g})"
        problem = None if frame_fault(frame.image) else frame_problem(frame.image)
        if problem:
            return ("black frame" if problem.startswith("black") else "blank frame"), problem
        return None

    def _take_frame(self, shot: Shot, image: np.ndarray, data: bytes, digest: str) -> None:
        """Journal the frame, then inspect and store it; behind the held ones while the store is away."""
        assert shot.frame is not None
        seq = shot.frame.seq
        if not self._held:
            try:
                existing = self.store.find_inspection(digest, self.processor.engine.model_hash)
            except StoreUnavailable:
                existing = None  # the write below meets the outage and holds the frame
            if existing is not None:
                self._refuse(shot, "identical frame", f"repeated frame: identical to stored inspection {existing}")
                return
        try:
            path = self.journal.add(f"{shot.trigger_id}-{digest[:12]}.png", data, shot.part_id)
        except OSError as exc:  # disk full, folder gone: this frame's answer says so, the feed goes on
            self._answer(shot, f"{shot.trigger_id}: frame not written, not inspected ({exc.strerror or exc})", "error")
            return
        if self._held:
            self._hold(Held(path, seq, shot.started, shot.part_id), None)
            return
        try:
            self._settle_frame(path, image, digest, seq, shot.started, shot.part_id)
        except StoreUnavailable as exc:
            self._hold(Held(path, seq, shot.started, shot.part_id), exc)

    # ----------------------------------------------------------------- loop
    def _disk_state(self, full: bool, detail: str) -> None:
        (log.error if full else log.info)("%s", detail)
        self.metrics.set_paused(full)
        quietly(self.store.record_event, self.station, "disk_full" if full else "disk_ok", detail)
        self._last_heartbeat = -float("inf")  # the station state says so at once

    def _heartbeat(self) -> None:
        """The station's state and `last_seen`, every HEARTBEAT_SECONDS even when no trigger comes."""
        now = self.clock()
        if now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now
        state = "camera_down" if self._down else "disk_full" if self.disk.paused else "running"
        quietly(self.store.set_station_state, self.station, state)

    def _turn(self) -> bool:
        """One pass of the loop; False when the feed is done (end of a file, stdin closed, max_frames)."""
        self.metrics.tick()
        self._heartbeat()
        self._flush_held()
        if self._grabber is None:
            self._connect()
            if self._grabber is None:
                self.sleep(min(0.1, max(LOOP_SECONDS, self._next_attempt - self.clock())))
                return True
        grabber = self._grabber
        if grabber.failed:
            self._mark_down("camera read failed")
            return True
        if not grabber.ended and grabber.seconds_since_read() > self.config.read_timeout_seconds:
            self._mark_down(f"no frame for {self.config.read_timeout_seconds:g} s (read hung)")
            return True
        frame = grabber.latest()
        new_frame = frame is not None and frame.seq != self._last_seq
        if self.trigger.fired(new_frame):
            self._take(frame)
            if self.max_frames and self.stats.processed >= self.max_frames:
                return False
        if grabber.ended and not (self.trigger.kind == "every" and new_frame):
            log.info("end of the video file")
            return False
        if self.trigger.exhausted:
            return False
        self.sleep(LOOP_SECONDS)
        return True

    def run(self) -> RunnerStats:
        self.store.record_event(self.station, "start", "camera feed")
        self.store.set_station_state(self.station, "running")
        try:
            self._resume_journal()
            while not self.stop.is_set() and self._turn():
                pass
        finally:
            self._finish()
        return self.stats

    def _finish(self) -> None:
        if self._grabber is not None:
            self._grabber.retire()
        self.metrics.alive = False
        try:
            self._flush_held(force=True)
        except StoreError as exc:  # refused for good: the entries stay in the journal, not lost
            log.error("held triggers not stored: %s", exc)
        if self._held:
            log.error("%d triggers have no stored answer yet; they stay in %s and are stored first when the "
                      "camera starts again on this data directory", len(self._held), self.journal.folder)
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        quietly(self.store.record_event, self.station, "stop",
                      f"{self.stats.processed} inspected; not inspected: {skipped}")
        quietly(self.store.set_station_state, self.station, "stopped")


def run_camera(source: str, bundle: Path, runner_config: RunnerConfig, camera_config: CameraConfig,
               inspect_config: InspectConfig, *, max_frames: int = 0, lineout: LineoutConfig | None = None) -> RunnerStats:
    """`inspector camera`: inspect frames from a device index, video file or RTSP/HTTP URL."""
    configure_logging()
    engine = load_engine(bundle, inspect_config)
    return run_camera_with_engine(source, engine, runner_config, camera_config, max_frames=max_frames, bundle=bundle,
                                  lineout=lineout)


def run_camera_with_engine(source: str, engine: Engine, runner_config: RunnerConfig, camera_config: CameraConfig, *,
                           max_frames: int = 0, bundle: Path | None = None,
                           open_capture: Callable[[], Capture] | None = None, lineout: LineoutConfig | None = None,
                           **loop_options: Any) -> RunnerStats:
    """`run_camera` with an engine already loaded (tests pass a fake engine and capture).

    Like `watch`: one feed per data directory (its lock), and the station is claimed in the store
    (`claim_station`), so a second feed, camera or folder, cannot publish under the same name.
    """
    if open_capture is None and is_file_source(source) and not Path(source).is_file():
        raise CameraError(f"{source}: video file not found")
    data_dir = Path(runner_config.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(data_dir):
        frames_dir = data_dir / "camera"
        overlays_dir = data_dir / "overlays"
        frames_dir.mkdir(parents=True, exist_ok=True)
        overlays_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(runner_config.db_url, data_dir)
        try:
            claim_station(store, data_dir, runner_config.station, "camera")
            # Triggers from the line (OPC UA's Trigger method, MQTT's trigger topic) queue here with their part id.
            line = loop_options.pop("line", None) or LineTriggers()
            processor = make_processor(engine, store, runner_config, overlays_dir, bundle,
                                       loop_options.pop("stream", None), lineout, line.put)
            loop_options["line"] = line
            loop = CameraLoop(open_capture or (lambda: open_video_capture(source, camera_config)), processor, store,
                              runner_config, camera_config, frames_dir, file_source=is_file_source(source),
                              max_frames=max_frames, **loop_options)
            processor.start_publishing()  # verdicts reach the line from their own thread, never the camera's
            finished = False
            try:
                stats = _serve(loop, runner_config, camera_config)
                finished = True
            finally:
                processor.stop_publishing(drain=finished)
        finally:
            store.close()
    log.info("camera feed stopped: %d inspected (%d flagged); not inspected: %s", stats.processed, stats.flagged,
             loop.skipped or "none")
    return stats


def _serve(loop: CameraLoop, runner_config: RunnerConfig, camera_config: CameraConfig) -> RunnerStats:
    """Run the loop until it ends or a signal stops it, with /healthz and /metrics when asked for."""
    server = None
    if runner_config.http_port:
        server = HealthServer(loop.metrics, runner_config.http_host, runner_config.http_port,
                              stale_after_s=max(10.0, 3 * camera_config.read_timeout_seconds)).start()
    try:
        with stop_on_signals(loop.stop):
            return loop.run()
    finally:
        if server is not None:
            server.stop()
