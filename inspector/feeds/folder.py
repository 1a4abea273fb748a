"""The folder feed (`inspector watch`): every image dropped into an inbox is inspected exactly once.

Each file moves through folders on one filesystem, so every move is an atomic `os.rename`:

    inbox/NAME --claim--> data_dir/processing/NAME --(row stored)--> data_dir/done/NAME
                                                   \\--(bad image)--> data_dir/quarantine/NAME

The store row is the commit point. A kill at any moment loses nothing: at start-up everything left in
`processing/` is taken again, the row is de-duplicated by (input sha256, model hash), and the final
move is repeated. A full scan of the inbox is the truth; watchdog events only wake the loop early.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from inspector.config import InspectConfig, RunnerConfig
from inspector.core.interface import Engine
from inspector.errors import ImageLoadError, InspectorError, StoreError, StoreUnavailable
from inspector.feeds.backoff import STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_JITTER, STORE_RETRY_MAX_SECONDS, Backoff
from inspector.feeds.inbox import Folders, StabilityTracker, exclusive_lock, final_path, is_temp_name, sha256_hex
from inspector.feeds.lineout import HealthServer
from inspector.feeds.processor import Processor, RunnerStats, configure_logging, load_engine, make_processor
from inspector.feeds.signals import inbox_observer, stop_on_signals
from inspector.store import open_store

log = logging.getLogger(__name__)

RATE_LOG_SECONDS = 10.0
HEARTBEAT_SECONDS = 10.0  # an idle runner still refreshes its station's last_seen this often


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
        from inspector.core.imageio import decode_image

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
    configure_logging()
    engine = load_engine(bundle, inspect_config)
    return run_folder(inbox, engine, config, inspect_config, once=once, bundle=bundle)

