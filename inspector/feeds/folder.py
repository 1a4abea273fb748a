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
from pathlib import Path
from typing import TextIO

from inspector.atomic import fsync_dir
from inspector.config import InspectConfig, LineoutConfig, RunnerConfig
from inspector.core.interface import Engine
from inspector.core.overlap import computed_ahead
from inspector.core.results import InspectionResult
from inspector.errors import InspectorError, StoreError, StoreUnavailable
from inspector.feeds.attempts import AttemptJournal
from inspector.feeds.backoff import STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_JITTER, STORE_RETRY_MAX_SECONDS, Backoff
from inspector.feeds.claimed import (
    Claimed,
    describe,
    failure_reason,
    is_passing_fault,
    original_name,
    passing_fault_digest,
)
from inspector.feeds.decoder import DecoderUnavailable, GuardedDecoder
from inspector.feeds.health import HealthServer
from inspector.feeds.housekeeping import DiskGuard
from inspector.feeds.inbox import Folders, StabilityTracker, exclusive_lock, final_path, is_temp_name, scan_inbox, sha256_hex
from inspector.feeds.processor import (
    Processor,
    RunnerStats,
    configure_logging,
    load_engine,
    make_processor,
)
from inspector.feeds.safeio import display_name, fit_name, quarantine_digest, raw_name_hex, read_regular
from inspector.feeds.signals import inbox_observer, stop_on_signals
from inspector.feeds.stations import claim_station
from inspector.store import open_store

log = logging.getLogger(__name__)

RATE_LOG_SECONDS = 10.0
PASSING_FAULT_PAUSES_SECONDS = (1.0, 4.0)  # out of memory: tried again after these pauses before giving up
HEARTBEAT_SECONDS = 10.0  # an idle runner still refreshes its station's last_seen this often


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
        self.attempts = AttemptJournal(folders.processing.parent, config.max_attempts)
        self.disk = DiskGuard(folders.processing.parent, config.min_free_bytes, config.retention_days, self._disk_state)
        self._failed: set[str] = set()  # names that could not even be moved: not retried this run
        self._outage_started: float | None = None  # monotonic time the store became unreachable
        self._outage_backoff = Backoff(STORE_RETRY_INITIAL_SECONDS, STORE_RETRY_MAX_SECONDS, STORE_RETRY_JITTER)
        self._last_rate_log = time.monotonic()
        self._last_heartbeat = time.monotonic()
        # Decoding runs in a worker process under a time limit and a memory cap (started and ended by run()).
        self.decoder = GuardedDecoder(config.decode_timeout_seconds, config.decode_memory_mb)

    # ----------------------------------------------------------------- scanning
    def _inbox_entries(self) -> dict[str, os.stat_result]:
        return scan_inbox(self.folders.inbox, self._failed)

    def _processing_files(self) -> list[Path]:
        files: list[tuple[int, str, Path]] = []
        with os.scandir(self.folders.processing) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False) or is_temp_name(entry.name) or entry.name in self._failed:
                    continue
                try:
                    files.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name, Path(entry.path)))
                except FileNotFoundError:
                    continue
        self.attempts.forget_missing({name for _, name, _ in files})
        return [path for _, _, path in sorted(files)]

    def _claim(self, name: str) -> Path | None:
        source = self.folders.inbox / name
        target = self.folders.processing / name
        if os.path.lexists(target):
            target = self.folders.processing / fit_name(name, f"{time.time_ns()}-")
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None  # someone took it back
        except OSError as exc:
            self._fail(name, f"{display_name(str(source))}: cannot move into processing ({exc.strerror or exc})")
            return None
        return target

    def _fail(self, name: str, reason: str) -> None:
        # A name that could not even be moved is skipped until restart; the reason is an event.
        log.error("%s", reason)
        self._failed.add(name)
        self.metrics.error()
        self.store.record_event(self.config.station, "error", reason)

    # --------------------------------------------------------------- processing
    def _move(self, item: Claimed, target: Path) -> None:
        """The final move, after the row's commit: fsynced, so a power cut cannot undo it half-way."""
        os.replace(item.path, target)  # same bytes or a free name: nothing is overwritten
        self.processor.fault("moved")
        try:
            fsync_dir(target.parent)
            fsync_dir(item.path.parent)
        except OSError as exc:  # the move is done and its row stored; only its durability is in doubt: say so
            detail = (f"{item.shown}: moved to {target.parent.name}/ but the folder could not be flushed to disk "
                      f"({exc.strerror or exc}); a power cut now could undo the move (the board would be taken "
                      "again and recognised by its row)")
            log.error("%s", detail)
            self.metrics.error()
            self.store.record_event(self.config.station, "error", detail)

    def _finish(self, item: Claimed, folder: Path) -> Path:
        target = final_path(folder, item.shown, item.digest)
        self._move(item, target)
        return target

    def _quarantine(self, item: Claimed, reason: str) -> None:
        reason = display_name(reason)
        if not item.digest:  # quarantined unread (too big, unreadable, crashed the runner): still a row
            item.digest = quarantine_digest(item.path, self.config.max_file_bytes)
        target = final_path(self.folders.quarantine, item.shown, item.digest)
        # Every input gets a row and a published `error` verdict, and the same file dropped again is
        # recognised by it (find_inspection) instead of being tried, or crashing the runner, again.
        self.processor.store_error(digest=item.digest, name=item.shown, source_path=str(item.path.parent / item.shown),
                                   image_path=str(target), reason=reason, raw_name=raw_name_hex(item.name))
        try:
            self._move(item, target)
        except OSError as exc:
            self._fail(item.path.name, f"{display_name(str(item.path))}: cannot move to quarantine "
                                       f"({exc.strerror or exc})")
            return
        self.stats.quarantined += 1
        log.warning("quarantined %s: %s", item.shown, reason)

    def process(self, paths: list[Path]) -> None:
        """Take claimed files (already in processing/) through to done/ or quarantine/.

        Each try is counted on disk first (`AttemptJournal`); a board whose earlier tries took the
        process down `max_attempts` times is quarantined untouched. A store outage is not the
        board's fault: its try is not counted.
        """
        fresh: list[Path] = []
        for path in paths:
            if self.attempts.exhausted(path.name):
                item = Claimed(path, original_name(path))
                self._quarantine(item, f"{item.shown}: tried alone {self.attempts.count(path.name)} times and "
                                       "the runner stopped during each try; not tried again")
                self.attempts.settled(path.name)
            else:
                fresh.append(path)
        self.attempts.begin([path.name for path in fresh])
        try:
            self._process(fresh)
        except StoreUnavailable:
            self.attempts.undo([path.name for path in fresh if os.path.lexists(path)])
            raise
        finally:
            self.attempts.settle_gone([path.name for path in fresh], self.folders.processing)

    def _process(self, paths: list[Path]) -> None:
        pending: list[Claimed] = []
        same_bytes_later: list[Claimed] = []  # a copy of an image already in this batch
        for path in paths:
            item = Claimed(path, original_name(path), claimed_at=time.monotonic())
            if self.stats.first_work is None:
                self.stats.first_work = item.claimed_at
            try:
                item.data = read_regular(path, self.config.max_file_bytes, item.shown)
                item.digest = sha256_hex(item.data)
                if any(other.digest == item.digest for other in pending):
                    same_bytes_later.append(item)
                    continue
                existing = self.store.find_inspection(item.digest, self.processor.engine.model_hash)
                if existing is not None:
                    self._settle_existing(item, existing)
                    continue
                item.image = self.decoder.decode(item.data, item.shown, max_pixels=self.inspect_config.max_pixels)
                item.data = b""  # the pixels are all that is needed from here
            except (StoreError, DecoderUnavailable):
                raise  # the store or the installation, not the board: outage handling or a stop with the board kept
            except Exception as exc:  # noqa: BLE001 - whatever an input causes quarantines that input
                self._quarantine(item, failure_reason(item, exc))
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

    def _settle_existing(self, item: Claimed, inspection_id: int) -> None:
        """Inputs already stored (a re-run after a crash, or the same bytes under another name)."""
        row = self.store.get_inspection(inspection_id)
        self.processor.resend(inspection_id)  # at least once: a resend or a resume hears its verdict
        self.processor.fault("published")
        if row is not None and row.verdict == "error":
            self._move(item, final_path(self.folders.quarantine, item.shown, item.digest))
            self.stats.quarantined += 1
            return
        self._finish(item, self.folders.done)
        self.stats.duplicates += 1
        log.info("%s: already inspected as #%d (same bytes, same model); inference skipped", item.shown,
                 inspection_id)

    def _inspect(self, items: list[Claimed]) -> None:
        self.processor.refresh()  # here: the store is used on this thread only
        size = max(1, self.inspect_config.batch_size)
        parts = [items[start:start + size] for start in range(0, len(items), size)]
        # The model runs on the next part while this one is drawn, stored and moved here, in order.
        for part, inspected in computed_ahead(parts, self._run_model):
            try:
                results = inspected.result()
            except StoreError:
                raise  # the store, not the image: the batch stays in processing/ for the outage handling
            except Exception as exc:  # noqa: BLE001 - InspectorError, or anything else an odd image causes
                if is_passing_fault(exc):
                    self._passing_fault(part, exc)
                    continue
                # An image the model itself refuses (e.g. smaller than its patch) must not stop the line
                # or, left in processing/, crash every restart: find it alone, quarantine it, go on.
                if len(part) > 1:
                    for item in part:
                        self._inspect([item])
                    continue
                self._quarantine(part[0], f"{part[0].shown}: the model cannot inspect this image ({describe(exc)})")
                part[0].image = None
                continue
            self._settle_inspected(part, results)
        self.store.set_station_state(self.config.station, "running", last_image=items[-1].shown)

    def _passing_fault(self, part: list[Claimed], exc: BaseException) -> None:
        """Out of memory is the PC's moment, not the boards': tried again after a pause, and if it lasts,
        quarantined with a row that does not brand the bytes (the same board sent again is inspected)."""
        for delay in PASSING_FAULT_PAUSES_SECONDS:
            log.warning("%d board(s): %s; trying again in %.0f s", len(part), describe(exc), delay)
            if self.stop.wait(delay):
                break
            try:
                results = self._run_model(part)
            except Exception as again:  # noqa: BLE001 - judged like the first failure
                if not is_passing_fault(again):
                    raise
                exc = again
                continue
            self._settle_inspected(part, results)
            return
        for item in part:
            # The row's digest is this attempt's, not the board's: the bytes are not recorded as bad.
            item.digest = passing_fault_digest(item.digest)
            self._quarantine(item, f"{item.shown}: not inspected: {describe(exc)} (a passing fault of this PC, "
                                   "not of the board; send it again to inspect it)")
            item.image = None

    def _run_model(self, part: list[Claimed]) -> list[InspectionResult]:
        return self.processor.engine.inspect_batch([item.image for item in part])  # type: ignore[misc]  # decoded in _process

    def _settle_inspected(self, items: list[Claimed], results: list[InspectionResult]) -> None:
        """Pictures, the stored row, then the move to done/: in that order, board by board."""
        for item, result in zip(items, results, strict=True):
            target = final_path(self.folders.done, item.shown, item.digest)
            try:  # before the commit: whatever drawing this board raises quarantines it
                overlay_path, heatmap_path = self.processor.save_images(item.image, result, item.digest, item.shown)  # type: ignore[arg-type]
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001
                self._quarantine(item, f"{item.shown}: its pictures cannot be drawn ({describe(exc)})")
                continue
            verdict = self.processor.store_result(
                result, digest=item.digest, name=item.shown, source_path=str(self.folders.inbox / item.shown),
                image_path=str(target), overlay_path=overlay_path, heatmap_path=heatmap_path, started=item.claimed_at,
                raw_name=raw_name_hex(item.name))
            self._move(item, target)
            self.stats.processed += 1
            if verdict.verdict in ("fail", "review"):
                self.stats.flagged += 1
            item.image = None

    # --------------------------------------------------------------------- loop
    def run(self, once: bool = False) -> RunnerStats:
        station = self.config.station
        self.decoder.start()  # a worker that cannot start is a start-up error, before any board is claimed
        self.store.set_station_state(station, "running")
        self.store.record_event(station, "start", f"watching {self.folders.inbox}")
        resume = True  # whatever a crash left claimed is taken first, before anything new
        try:
            while not self.stop.is_set():
                try:
                    if resume or self._outage_started is not None:
                        self._resume_processing()  # what a crash or an outage left claimed
                        resume = False
                        if self._outage_started is not None:  # a failed write here is the same outage
                            self._store_back()
                    if not self._step(once):
                        break
                except StoreUnavailable as exc:
                    if once:
                        raise
                    self._store_down(exc)
        finally:
            self.metrics.alive = False
            self.decoder.close()
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
        # Boards already tried once (a crash or kill in hand) go alone: a poison board then takes
        # only itself down, and its solo tries are what `max_attempts` counts.
        suspects = [path for path in leftovers if self.attempts.suspect(path.name)]
        others = [path for path in leftovers if not self.attempts.suspect(path.name)]
        batches = [[path] for path in suspects]
        batches += [others[i:i + self.config.max_batch] for i in range(0, len(others), self.config.max_batch)]
        for batch in batches:
            if self.stop.is_set():
                break
            self.process(batch)

    def _step(self, once: bool) -> bool:
        """One pass of the loop: claim and process a batch, or wait. False when `once` is done."""
        self.metrics.tick()
        entries = self._inbox_entries()
        ready = self.stability.ready(entries) if self.disk.may_take() else []
        if once and self.disk.paused:
            return False  # the boards wait in the inbox for a run with room to work
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

    def _disk_state(self, full: bool, detail: str) -> None:
        (log.error if full else log.info)("%s", detail)
        self.metrics.set_paused(full)
        self.store.record_event(self.config.station, "disk_full" if full else "disk_ok", detail)
        self.store.set_station_state(self.config.station, "disk_full" if full else "running")

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
               stream: TextIO | None = None, lineout: LineoutConfig | None = None) -> RunnerStats:
    """`watch` with an engine already loaded (tests pass a deterministic fake)."""
    inbox = Path(inbox).resolve()
    data_dir = Path(config.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    folders = Folders.create(inbox, data_dir)
    with exclusive_lock(data_dir):
        store = open_store(config.db_url, data_dir)
        try:
            claim_station(store, data_dir, config.station, "watch")
            processor = make_processor(engine, store, config, folders.overlays, bundle, stream, lineout)
            runner = FolderRunner(folders, processor, config, inspect_config, stop)
            server = None
            if config.http_port:
                server = HealthServer(processor.metrics, config.http_host, config.http_port,
                                      stale_after_s=max(10.0, 10 * config.poll_seconds)).start()
            processor.start_publishing()  # verdicts reach the line from their own thread from here on
            finished = False
            try:
                with stop_on_signals(runner.stop), inbox_observer(inbox, runner.wake):
                    stats = runner.run(once=once)
                finished = True
            finally:
                # A clean stop publishes what is due on the way out; after a fault the entries wait for
                # the next start (they are in the store either way).
                processor.stop_publishing(drain=finished)
                if server is not None:
                    server.stop()
        finally:
            store.close()
    log.info("stopped: %d inspected (%d flagged), %d duplicates, %d quarantined; %.2f images/s sustained",
             stats.processed, stats.flagged, stats.duplicates, stats.quarantined, stats.sustained_rate())
    return stats


def watch(inbox: Path, bundle: Path, config: RunnerConfig, inspect_config: InspectConfig, *,
          once: bool = False, lineout: LineoutConfig | None = None) -> RunnerStats:
    """`inspector watch`: inspect each image dropped into `inbox` exactly once and store the result."""
    configure_logging()
    engine = load_engine(bundle, inspect_config)
    return run_folder(inbox, engine, config, inspect_config, once=once, bundle=bundle, lineout=lineout)

