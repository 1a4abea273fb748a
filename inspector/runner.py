"""The folder feed (`inspector watch`): every image dropped into an inbox is inspected exactly once.

Each file moves through folders on one filesystem, so every move is an atomic `os.rename`:

    inbox/NAME --claim--> data_dir/processing/NAME --(row stored)--> data_dir/done/NAME
                                                   \\--(bad image)--> data_dir/quarantine/NAME

The store row is the commit point. A kill at any moment loses nothing: at start-up everything left in
`processing/` is taken again, the row is de-duplicated by (input sha256, model hash), and the final
move is repeated. A full scan of the inbox is the truth; watchdog events only wake the loop early.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random as random_module
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np

from inspector.config import InspectConfig, RunnerConfig
from inspector.errors import ImageLoadError, InspectorError, OutputError, StoreError, StoreUnavailable
from inspector.lineout import HealthServer, LineOut, Metrics
from inspector.results import InspectionResult
from inspector.store import Store, open_store

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")
THRESHOLD_CACHE_SECONDS = 1.0
RATE_LOG_SECONDS = 10.0
HEARTBEAT_SECONDS = 10.0  # an idle runner still refreshes its station's last_seen this often
STORE_RETRY_INITIAL_SECONDS = 1.0  # store outage: first retry after this, doubling ...
STORE_RETRY_MAX_SECONDS = 30.0  # ... up to this
STORE_RETRY_JITTER = 0.25  # +-25%: stations that lost the store together do not retry in step


class Backoff:
    """Exponential retry delays with jitter (camera reconnects, store outages): initial, 2x, 4x ...
    up to max, each +-jitter."""

    def __init__(self, initial: float, maximum: float, jitter: float,
                 random: Callable[[], float] = random_module.random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.random = random
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2 ** self.failures))
        self.failures += 1
        return max(0.0, base * (1.0 + self.jitter * (2.0 * self.random() - 1.0)))

    def reset(self) -> None:
        self.failures = 0


class Engine(Protocol):
    """What the runner needs of `inspector.engine.Inspector` (a fake one serves unit tests)."""

    model_hash: str
    calibration_version: int
    threshold_source: str
    image_threshold: float

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]: ...

    def set_image_threshold(self, value: float, version: int) -> None: ...


@dataclass
class RunnerStats:
    processed: int = 0  # new verdicts stored
    flagged: int = 0
    duplicates: int = 0  # inputs already stored for this model (inference skipped)
    quarantined: int = 0
    started: float = field(default_factory=time.monotonic)
    first_work: float | None = None
    last_work: float | None = None

    @property
    def handled(self) -> int:
        return self.processed + self.duplicates + self.quarantined

    def sustained_rate(self) -> float:
        """Images per second from the first claim to the last stored verdict."""
        if self.first_work is None or self.last_work is None or self.last_work <= self.first_work:
            return 0.0
        return self.handled / (self.last_work - self.first_work)


def is_temp_name(name: str) -> bool:
    """Names writers use before renaming into place; such files are never taken."""
    return name.startswith(".") or name.endswith("~") or name.lower().endswith(TEMP_SUFFIXES)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same_bytes(path: Path, digest: str) -> bool:
    try:
        return sha256_hex(path.read_bytes()) == digest
    except OSError:
        return False


def final_path(folder: Path, name: str, digest: str) -> Path:
    """Where a file with these bytes ends up in done/ or quarantine/, never overwriting other bytes.

    Deterministic given the folder's contents, so a move repeated after a crash lands where the
    stored row already points.
    """
    for candidate in (folder / name, folder / f"{digest[:12]}-{name}"):
        if not candidate.exists() or _same_bytes(candidate, digest):
            return candidate
    return folder / f"{digest}-{time.time_ns()}-{name}"


@dataclass
class Folders:
    inbox: Path
    processing: Path
    done: Path
    quarantine: Path
    overlays: Path

    @classmethod
    def create(cls, inbox: Path, data_dir: Path) -> Folders:
        if not inbox.is_dir():
            raise InspectorError(f"{inbox}: inbox folder does not exist")
        folders = cls(inbox, data_dir / "processing", data_dir / "done", data_dir / "quarantine",
                      data_dir / "overlays")
        for folder in (folders.processing, folders.done, folders.quarantine, folders.overlays):
            folder.mkdir(parents=True, exist_ok=True)
        inbox_device = os.stat(inbox).st_dev
        for folder in (folders.processing, folders.done, folders.quarantine):
            if os.stat(folder).st_dev != inbox_device:
                raise InspectorError(
                    f"{folder} is on a different filesystem from the inbox {inbox}: moves would not be atomic; "
                    "put --data-dir on the same filesystem as the inbox"
                )
        return folders


@contextmanager
def exclusive_lock(data_dir: Path) -> Iterator[None]:
    """One runner per data directory: two would claim the same processing/ files."""
    path = data_dir / "runner.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise InspectorError(f"{data_dir}: another runner is already using this data directory") from exc
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class StabilityTracker:
    """A file is ready once its size and mtime have stopped changing for `stable_seconds`."""

    def __init__(self, stable_seconds: float, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.stable_seconds = stable_seconds
        self._clock = clock
        self._wall = wall
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}

    def ready(self, entries: dict[str, os.stat_result]) -> list[str]:
        now = self._clock()
        wall = self._wall()
        ready: list[str] = []
        current: dict[str, tuple[tuple[int, int, int], float]] = {}
        for name, st in entries.items():
            signature = (st.st_size, st.st_mtime_ns, st.st_ino)
            previous = self._seen.get(name)
            since = previous[1] if previous and previous[0] == signature else now
            current[name] = (signature, since)
            if self.stable_seconds <= 0:
                ready.append(name)
            elif previous and previous[0] == signature and (
                    now - since >= self.stable_seconds or wall - st.st_mtime_ns / 1e9 >= self.stable_seconds):
                # Unchanged across two scans, and quiet long enough by our clock or by the file's own mtime
                # (files already there at start-up need not wait a full period again).
                ready.append(name)
        self._seen = current
        return sorted(ready, key=lambda n: (entries[n].st_mtime_ns, n))

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)


@dataclass
class Verdict:
    """One stored outcome, as published on the line."""

    inspection_id: int
    source_name: str
    input_sha256: str
    verdict: str
    score: float | None
    threshold: float | None
    regions: list[dict[str, Any]]
    image_path: str
    overlay_path: str
    model_hash: str
    threshold_version: int | None
    station: str
    error: str | None = None
    threshold_source: str | None = None  # "bundle" or "qa": which of the two version counters

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Processor:
    """Inspects decoded images, saves overlays, stores rows and publishes verdicts (folder and camera)."""

    def __init__(self, engine: Engine, store: Store, config: RunnerConfig, metrics: Metrics, lineout: LineOut,
                 overlays_dir: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.store = store
        self.config = config
        self.metrics = metrics
        self.lineout = lineout
        self.overlays_dir = overlays_dir
        self._clock = clock
        self._threshold_checked = -float("inf")

    def refresh_threshold(self) -> None:
        """Apply QA's latest threshold version from the store (checked at most once a second)."""
        now = self._clock()
        if now - self._threshold_checked < THRESHOLD_CACHE_SECONDS:
            return
        self._threshold_checked = now
        current = self.store.current_threshold(self.engine.model_hash)
        if current is not None and (self.engine.threshold_source != "qa"
                                    or current.version != self.engine.calibration_version
                                    or current.image_threshold != self.engine.image_threshold):
            log.info("threshold version %d: image threshold %.4f -> %.4f (%s, by %s)", current.version,
                     self.engine.image_threshold, current.image_threshold, current.reason, current.author)
            self.engine.set_image_threshold(current.image_threshold, current.version)

    def inspect(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        self.refresh_threshold()
        return self.engine.inspect_batch(list(images))

    def save_images(self, image: np.ndarray, result: InspectionResult, digest: str, name: str) -> tuple[str, str]:
        """Overlay and heatmap PNGs (written atomically, so a kill never leaves half a file).

        A picture that cannot be written (disk full, folder gone) costs the picture, never the
        verdict: its path stays empty, an error event says why, and the board is stored as usual.
        """
        from inspector import render

        stem = f"{digest[:16]}-{Path(name).stem}"
        pictures = [("overlay", lambda: render.overlay(image, result)), ("heatmap", lambda: render.heatmap_image(result))]
        if result.reconstruction is not None:  # inspect.save_reconstruction: the dashboard finds it by name
            pictures.append(("reconstruction", lambda: render.reconstruction_image(result)))
        paths = []
        for kind, draw in pictures:
            try:
                paths.append(str(render.save_png(self.overlays_dir / f"{stem}.{kind}.png", draw())))
            except (OutputError, OSError) as exc:
                log.error("%s: %s not written (%s); the verdict is stored without it", name, kind, exc)
                self.store.record_event(self.config.station, "error", f"{name}: {kind} not written ({exc})")
                paths.append("")
        return paths[0], paths[1]

    def store_result(self, result: InspectionResult, *, digest: str, name: str, source_path: str,
                     image_path: str, overlay_path: str, heatmap_path: str, started: float,
                     extra_timings: dict[str, float] | None = None) -> Verdict:
        regions = [region.to_dict() for region in result.regions]
        timings = {**result.timings_ms, **(extra_timings or {})}
        inspection_id = self.store.record_inspection(
            station=self.config.station, input_sha256=digest, model_hash=result.model_hash, verdict=result.verdict,
            source_path=source_path, source_name=name, score=result.score, threshold=result.threshold,
            regions=regions, image_path=image_path, overlay_path=overlay_path, heatmap_path=heatmap_path,
            threshold_version=result.calibration_version, threshold_source=result.threshold_source, timings=timings,
        )
        verdict = Verdict(inspection_id, name, digest, result.verdict, float(result.score), float(result.threshold),
                          regions, image_path, overlay_path, result.model_hash, result.calibration_version,
                          self.config.station, threshold_source=result.threshold_source)
        self.metrics.observe(result.verdict, self._clock() - started)
        self.lineout.publish(verdict.to_dict())
        return verdict

    def store_error(self, *, digest: str, name: str, source_path: str, image_path: str, reason: str) -> int:
        inspection_id = self.store.record_inspection(
            station=self.config.station, input_sha256=digest, model_hash=self.engine.model_hash, verdict="error",
            source_path=source_path, source_name=name, image_path=image_path, error=reason,
        )
        self.store.record_event(self.config.station, "quarantine", reason)
        self.metrics.error()
        self.lineout.publish(Verdict(inspection_id, name, digest, "error", None, None, [], image_path, "",
                                     self.engine.model_hash, None, self.config.station, reason).to_dict())
        return inspection_id


@dataclass
class _Claimed:
    path: Path  # in processing/
    name: str  # original name in the inbox
    data: bytes = b""
    digest: str = ""
    image: np.ndarray | None = None
    claimed_at: float = 0.0


class FolderRunner:
    """The inbox state machine around a `Processor`."""

    def __init__(self, folders: Folders, processor: Processor, config: RunnerConfig, inspect_config: InspectConfig,
                 stop: threading.Event | None = None) -> None:
        self.folders = folders
        self.processor = processor
        self.store = processor.store
        self.config = config
        self.inspect_config = inspect_config
        self.metrics = processor.metrics
        self.stop = stop or threading.Event()
        self.wake = threading.Event()
        self.stats = RunnerStats()
        self.stability = StabilityTracker(config.stable_seconds)
        self._failed: set[str] = set()  # names that could not even be moved: not retried this run
        self._outage_started: float | None = None  # monotonic time the store became unreachable
        self._outage_backoff = Backoff(STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_MAX_SECONDS, STORE_RETRY_JITTER)
        self._last_rate_log = time.monotonic()
        self._last_heartbeat = time.monotonic()

    # ----------------------------------------------------------------- scanning
    def _inbox_entries(self) -> dict[str, os.stat_result]:
        entries: dict[str, os.stat_result] = {}
        try:
            with os.scandir(self.folders.inbox) as it:
                for entry in it:
                    if is_temp_name(entry.name) or entry.name in self._failed:
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            entries[entry.name] = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # renamed away between listing and stat
        except FileNotFoundError as exc:
            raise InspectorError(f"{self.folders.inbox}: inbox folder disappeared") from exc
        return entries

    def _processing_files(self) -> list[Path]:
        files = [p for p in self.folders.processing.iterdir()
                 if p.is_file() and not is_temp_name(p.name) and p.name not in self._failed]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _claim(self, name: str) -> Path | None:
        source = self.folders.inbox / name
        target = self.folders.processing / name
        if target.exists():
            target = self.folders.processing / f"{time.time_ns()}-{name}"
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None  # someone took it back
        except OSError as exc:
            self._fail(name, f"{source}: cannot move into processing ({exc.strerror or exc})")
            return None
        return target

    def _fail(self, name: str, reason: str) -> None:
        log.error("%s", reason)
        self._failed.add(name)
        self.metrics.error()
        self.store.record_event(self.config.station, "error", reason)

    # --------------------------------------------------------------- processing
    def _finish(self, item: _Claimed, folder: Path) -> Path:
        target = final_path(folder, item.name, item.digest)
        os.replace(item.path, target)  # same bytes or a free name: nothing is overwritten
        return target

    def _quarantine(self, item: _Claimed, reason: str) -> None:
        target = final_path(self.folders.quarantine, item.name, item.digest or "unreadable")
        if item.digest:
            self.processor.store_error(digest=item.digest, name=item.name, source_path=str(item.path),
                                       image_path=str(target), reason=reason)
        else:
            self.store.record_event(self.config.station, "quarantine", reason)
            self.metrics.error()
        try:
            os.replace(item.path, target)
        except OSError as exc:
            self._fail(item.path.name, f"{item.path}: cannot move to quarantine ({exc.strerror or exc})")
            return
        self.stats.quarantined += 1
        log.warning("quarantined %s: %s", item.name, reason)

    def _original_name(self, path: Path) -> str:
        # A collision in processing/ got a "<ns>-" prefix; the stored name stays the inbox name.
        head, _, rest = path.name.partition("-")
        return rest if head.isdigit() and len(head) >= 18 and rest else path.name

    def process(self, paths: list[Path]) -> None:
        """Take claimed files (already in processing/) through to done/ or quarantine/."""
        from inspector.imageio import decode_image

        pending: list[_Claimed] = []
        same_bytes_later: list[_Claimed] = []  # a copy of an image already in this batch
        for path in paths:
            item = _Claimed(path, self._original_name(path), claimed_at=time.monotonic())
            if self.stats.first_work is None:
                self.stats.first_work = item.claimed_at
            try:
                item.data = path.read_bytes()
            except OSError as exc:
                self._quarantine(item, str(ImageLoadError(path, f"cannot read ({exc.strerror or exc})")))
                continue
            item.digest = sha256_hex(item.data)
            if any(other.digest == item.digest for other in pending):
                same_bytes_later.append(item)
                continue
            existing = self.store.find_inspection(item.digest, self.processor.engine.model_hash)
            if existing is not None:
                self._settle_existing(item, existing)
                continue
            try:
                item.image = decode_image(item.data, item.name, max_pixels=self.inspect_config.max_pixels)
            except ImageLoadError as exc:
                self._quarantine(item, str(exc))
                continue
            pending.append(item)
        if pending:
            self._inspect(pending)
        for item in same_bytes_later:
            existing = self.store.find_inspection(item.digest, self.processor.engine.model_hash)
            if existing is None:  # pragma: no cover - the first copy's row was just committed
                raise InspectorError(f"{item.path}: the row of an identical image is missing")
            self._settle_existing(item, existing)
        self.stats.last_work = time.monotonic()

    def _settle_existing(self, item: _Claimed, inspection_id: int) -> None:
        """Inputs already stored (a re-run after a crash, or the same bytes under another name)."""
        row = self.store.get_inspection(inspection_id)
        if row is not None and row.verdict == "error":
            target = final_path(self.folders.quarantine, item.name, item.digest)
            os.replace(item.path, target)
            self.stats.quarantined += 1
            return
        self._finish(item, self.folders.done)
        self.stats.duplicates += 1
        log.info("%s: already inspected as #%d (same bytes, same model); inference skipped", item.name,
                 inspection_id)

    def _inspect(self, items: list[_Claimed]) -> None:
        images = [item.image for item in items]
        try:
            results = self.processor.inspect(images)  # type: ignore[arg-type]
        except StoreError:
            raise  # the store, not the image: the batch stays in processing/ for the outage handling
        except InspectorError as exc:
            # An image the model itself refuses (e.g. smaller than its patch) must not stop the line
            # or, left in processing/, crash every restart: find it alone, quarantine it, go on.
            if len(items) > 1:
                for item in items:
                    self._inspect([item])
                return
            self._quarantine(items[0], f"{items[0].name}: the model cannot inspect this image ({exc})")
            items[0].image = None
            return
        for item, result in zip(items, results, strict=True):
            target = final_path(self.folders.done, item.name, item.digest)
            overlay_path, heatmap_path = self.processor.save_images(item.image, result, item.digest, item.name)  # type: ignore[arg-type]
            verdict = self.processor.store_result(
                result, digest=item.digest, name=item.name, source_path=str(self.folders.inbox / item.name),
                image_path=str(target), overlay_path=overlay_path, heatmap_path=heatmap_path, started=item.claimed_at)
            os.replace(item.path, target)
            self.stats.processed += 1
            if verdict.verdict in ("fail", "review"):
                self.stats.flagged += 1
            item.image = None
        self.store.set_station_state(self.config.station, "running", last_image=items[-1].name)

    # --------------------------------------------------------------------- loop
    def run(self, once: bool = False) -> RunnerStats:
        station = self.config.station
        self.store.set_station_state(station, "running")
        self.store.record_event(station, "start", f"watching {self.folders.inbox}")
        resume = True  # whatever a crash left claimed is taken first, before anything new
        try:
            while not self.stop.is_set():
                try:
                    if resume or self._outage_started is not None:
                        self._resume_processing()  # what a crash or an outage left claimed
                        resume = False
                        if self._outage_started is not None and not self.stop.is_set():
                            self._store_back()
                    if not self._step(once):
                        break
                except StoreUnavailable as exc:
                    if once:
                        raise
                    self._store_down(exc)
        finally:
            self.metrics.alive = False
            try:
                self.store.record_event(station, "stop", f"{self.stats.processed} inspected, {self.stats.duplicates} "
                                                         f"duplicates, {self.stats.quarantined} quarantined")
                self.store.set_station_state(station, "stopped")
            except StoreError as exc:
                log.error("stop not recorded: %s", exc)
        return self.stats

    def _resume_processing(self) -> None:
        leftovers = self._processing_files()
        if leftovers:
            log.info("resuming %d image(s) left in %s", len(leftovers), self.folders.processing)
        for start in range(0, len(leftovers), self.config.max_batch):
            if self.stop.is_set():
                break
            self.process(leftovers[start:start + self.config.max_batch])

    def _step(self, once: bool) -> bool:
        """One pass of the loop: claim and process a batch, or wait. False when `once` is done."""
        self.metrics.tick()
        entries = self._inbox_entries()
        ready = self.stability.ready(entries)
        self.metrics.set_queue_depth(len(entries))
        batch: list[Path] = []
        for name in ready[: self.config.max_batch]:
            claimed = self._claim(name)
            self.stability.forget(name)
            if claimed is not None:
                batch.append(claimed)
        if batch:
            self.process(batch)
            self._log_rate()
            return True  # a backlog is drained without waiting
        if once and not entries:
            return False
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = time.monotonic()
            self.store.set_station_state(self.config.station, "running")
        self.wake.wait(self.config.poll_seconds)
        self.wake.clear()
        return True

    def _store_down(self, exc: StoreUnavailable) -> None:
        """The store is unreachable: keep every claimed file where it is and retry with backoff.

        Nothing is lost meanwhile: a board is moved to done/ only after its row is committed, and
        the retry starts with processing/, where a committed row is recognised by its bytes.
        """
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            log.error("%s; waiting for the store (files stay in %s and %s)", exc, self.folders.inbox,
                      self.folders.processing)
        else:
            log.warning("store still unreachable after %.0f s: %s", time.monotonic() - self._outage_started, exc)
        self.metrics.error()
        self.stop.wait(self._outage_backoff.next_delay())

    def _store_back(self) -> None:
        assert self._outage_started is not None
        seconds = time.monotonic() - self._outage_started
        self.store.record_event(self.config.station, "error", f"results store unreachable for {seconds:.0f} s; "
                                                              "the boards claimed meanwhile were kept and inspected")
        self._outage_started = None  # only now: a failed write above is the same outage, same backoff
        self._outage_backoff.reset()
        log.info("store reachable again after %.0f s", seconds)

    def _log_rate(self) -> None:
        now = time.monotonic()
        if now - self._last_rate_log >= RATE_LOG_SECONDS:
            self._last_rate_log = now
            log.info("%.2f images/s over the last minute; %d inspected, %d flagged, %d quarantined",
                     self.metrics.rate(), self.stats.processed, self.stats.flagged, self.stats.quarantined)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT ask the loop to finish the batch in hand and exit cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def inbox_observer(inbox: Path, wake: threading.Event) -> Iterator[None]:
    """Watchdog events only wake the loop early; the scan decides what is there."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            wake.set()

    observer = Observer()
    observer.schedule(Wake(), str(inbox), recursive=False)
    observer.daemon = True
    try:
        observer.start()
    except OSError as exc:  # e.g. inotify watch limit: polling still works
        log.warning("file events unavailable for %s (%s); polling every scan", inbox, exc)
        yield
        return
    try:
        yield
    finally:
        # watchdog 7 logs a spurious ERROR when a stop races an inotify read; at shutdown it means nothing.
        inotify_log = logging.getLogger("watchdog.observers.inotify")
        level = inotify_log.level
        inotify_log.setLevel(logging.CRITICAL)
        try:
            observer.stop()
            observer.join(timeout=5)
        finally:
            inotify_log.setLevel(level)


def load_engine(bundle: Path, inspect_config: InspectConfig) -> Engine:
    from inspector.engine import Inspector

    return Inspector.load(bundle, inspect_config)


def make_processor(engine: Engine, store: Store, config: RunnerConfig, overlays_dir: Path,
                   bundle: Path | None = None, stream: TextIO | None = None) -> Processor:
    metrics = Metrics()

    def hook_failed(detail: str) -> None:
        log.warning("%s", detail)
        metrics.error()
        store.record_event(config.station, "error", detail)

    lineout = LineOut(json_lines=config.json_lines, hook=config.hook, on_hook_failure=hook_failed, stream=stream)
    store.register_model(engine.model_hash, str(bundle or ""), {})
    return Processor(engine, store, config, metrics, lineout, overlays_dir)


def run_folder(inbox: Path, engine: Engine, config: RunnerConfig, inspect_config: InspectConfig, *,
               once: bool = False, bundle: Path | None = None, stop: threading.Event | None = None,
               stream: TextIO | None = None) -> RunnerStats:
    """`watch` with an engine already loaded (tests pass a deterministic fake)."""
    inbox = Path(inbox).resolve()
    data_dir = Path(config.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    folders = Folders.create(inbox, data_dir)
    with exclusive_lock(data_dir):
        store = open_store(config.db_url, data_dir)
        try:
            processor = make_processor(engine, store, config, folders.overlays, bundle, stream)
            runner = FolderRunner(folders, processor, config, inspect_config, stop)
            server = None
            if config.http_port:
                server = HealthServer(processor.metrics, config.http_host, config.http_port,
                                      stale_after_s=max(10.0, 10 * config.poll_seconds)).start()
            try:
                with stop_on_signals(runner.stop), inbox_observer(inbox, runner.wake):
                    stats = runner.run(once=once)
            finally:
                if server is not None:
                    server.stop()
        finally:
            store.close()
    log.info("stopped: %d inspected (%d flagged), %d duplicates, %d quarantined; %.2f images/s sustained",
             stats.processed, stats.flagged, stats.duplicates, stats.quarantined, stats.sustained_rate())
    return stats


def watch(inbox: Path, bundle: Path, config: RunnerConfig, inspect_config: InspectConfig, *,
          once: bool = False) -> RunnerStats:
    """`inspector watch`: inspect each image dropped into `inbox` exactly once and store the result."""
    _configure_logging()
    engine = load_engine(bundle, inspect_config)
    return run_folder(inbox, engine, config, inspect_config, once=once, bundle=bundle)


def _configure_logging() -> None:
    # Logs go to stderr; stdout carries only the JSON verdict lines.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def benchmark_runner(bundle: Path, images: Path, workdir: Path) -> dict[str, Any]:
    """Sustained images/s of the whole folder runner (claim, decode, inspect, overlay, store, move)."""
    import shutil

    from inspector.imageio import is_image_file

    sources = sorted(p for p in Path(images).iterdir() if is_image_file(p))
    if not sources:
        raise InspectorError(f"{images}: no images to benchmark the runner with")
    workdir = Path(workdir)
    run_dir = workdir / f"runner-bench-{time.time_ns()}"
    inbox = run_dir / "inbox"
    inbox.mkdir(parents=True)
    engine = load_engine(bundle, InspectConfig())
    for index, source in enumerate(sources):
        shutil.copyfile(source, inbox / f"{index:05d}-{source.name}")
    config = RunnerConfig(station="bench", data_dir=str(run_dir / "data"), stable_seconds=0.0, json_lines=False,
                          poll_seconds=0.05)
    started = time.monotonic()
    stats = run_folder(inbox, engine, config, InspectConfig(), once=True, bundle=bundle)
    wall = time.monotonic() - started
    return {
        "runner_images": stats.handled,
        "runner_seconds": round(wall, 3),
        "runner_images_per_second": round(stats.sustained_rate(), 3),
        "runner_images_per_second_wall": round(stats.handled / wall, 3) if wall > 0 else 0.0,
        "runner_quarantined": stats.quarantined,
    }
