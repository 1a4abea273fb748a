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
from inspector.core.results import InspectionResult
from inspector.errors import CameraError, StoreError, StoreUnavailable
from inspector.feeds.backoff import STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_JITTER, STORE_RETRY_MAX_SECONDS, Backoff
from inspector.feeds.camera_journal import JOURNAL_FOLDER, Answer, Held, Journal, Shot, answer_digest, entry_seq
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
NOT_INSPECTED = "not inspected"
# Refusals that say the camera or its light failed, not the board: a run of them degrades /healthz.
CAMERA_FAULTS = ("stale frame", "black frame", "blank frame")


class CameraLoop:
    """Connection state machine + triggers around a `Processor`."""

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

    def _refuse(self, shot: Shot, kind: str, reason: str) -> None:
        self.skipped[kind] = self.skipped.get(kind, 0) + 1
        self._answer(shot, f"{NOT_INSPECTED}: {reason}", "not_inspected")

    def _answer(self, shot: Shot, reason: str, tail: str, image_path: str = "") -> None:
        """Store (or journal, while the store is away) a trigger's error row; it is published like a verdict."""
        seq = shot.frame.seq if shot.frame is not None else 0
        answer = Answer(answer_digest(shot.trigger_id), f"{shot.trigger_id}-{tail}", f"camera:{seq}", image_path, reason,
                        shot.part_id)
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
        self._quietly(lambda: self.store.set_station_state(self.station, "running", last_image=path.name))

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
        self._quietly(self.store.record_event, self.station, "error", detail)

    def _recovered(self) -> None:
        detail = f"a frame fit to inspect again after {self._fault_run} triggers not inspected"
        log.info("%s", detail)
        self.metrics.set_degraded(None)
        self._quietly(self.store.record_event, self.station, "camera_up", detail)

    # ------------------------------------------------------- store outages
    def _quietly(self, call: Callable[..., Any], *args: Any) -> None:
        """Station state and events are worth a log line, not the feed, when the store is away."""
        try:
            call(*args)
        except StoreError as exc:
            log.warning("not recorded: %s", exc)

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
        self._quietly(self.store.record_event, self.station, "error", f"{why}; {count} triggers were held and stored late")

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

    def _settle_repeat(self, entry: Held, existing: int) -> None:
        final = self.journal.final(entry.path)
        record = self.store.get_inspection(existing)
        if record is not None and record.image_path != str(final):  # another trigger's bytes: answer this one
            trigger_id = entry.path.name.rsplit("-", 1)[0]
            self._store_answer(Answer(answer_digest(trigger_id), f"{trigger_id}-not_inspected", f"camera:{entry.seq}",
                                      str(final), f"{NOT_INSPECTED}: repeated frame: identical to stored inspection "
                                                  f"{existing}"))
        self.journal.settle(entry.path)

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

    # ----------------------------------------------------------------- loop
    def _disk_state(self, full: bool, detail: str) -> None:
        (log.error if full else log.info)("%s", detail)
        self.metrics.set_paused(full)
        self._quietly(self.store.record_event, self.station, "disk_full" if full else "disk_ok", detail)
        self._last_heartbeat = -float("inf")  # the station state says so at once

    def _heartbeat(self) -> None:
        """The station's state and `last_seen`, every HEARTBEAT_SECONDS even when no trigger comes."""
        now = self.clock()
        if now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now
        state = "camera_down" if self._down else "disk_full" if self.disk.paused else "running"
        self._quietly(self.store.set_station_state, self.station, state)

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
        self._quietly(self.store.record_event, self.station, "stop",
                      f"{self.stats.processed} inspected; not inspected: {skipped}")
        self._quietly(self.store.set_station_state, self.station, "stopped")


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
