"""What both feeds (folder and camera) do with a decoded board: inspect, save pictures, store, publish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from inspector.config import InspectConfig, LineoutConfig, RunnerConfig, mask_secrets
from inspector.core.interface import Engine
from inspector.core.results import InspectionResult
from inspector.core.tolerance import LearnedTolerance
from inspector.errors import InspectorError, OutputError
from inspector.feeds.health import Metrics
from inspector.feeds.lineout import LineOut
from inspector.feeds.outputs import TriggerCallback, make_outputs, verdict_id, verdict_message
from inspector.feeds.publisher import Publisher
from inspector.feeds.safeio import NAME_MAX_BYTES, fit_name
from inspector.store import Store
from inspector.store.records import InspectionRecord
from inspector.store.schema import utcnow

log = logging.getLogger(__name__)

THRESHOLD_CACHE_SECONDS = 1.0
LONGEST_PICTURE_SUFFIX = ".reconstruction.png"


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


@dataclass
class PublishedVerdict:
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
    verdict_id: str = ""  # stable across repeats (crash, retry, board sent again): the line drops repeats

    def __post_init__(self) -> None:
        if not self.verdict_id:
            self.verdict_id = verdict_id(self.input_sha256, self.model_hash)


def _no_fault(step: str) -> None:
    """Fault-injection point between a commit and the board's final move (tests replace it)."""


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
        self._tolerance_checked = -float("inf")
        self._tolerance_seen = 0  # the store's learned tolerance version last applied
        self.wall: Callable[[], datetime] = utcnow  # when outbox retries fall due (tests move it)
        self.fault: Callable[[str], None] = _no_fault
        self.publisher = Publisher(store, config.station, lineout, metrics, to_message=self._message,
                                   max_attempts=config.max_publish_attempts, wall=lambda: self.wall())

    def _message(self, row: InspectionRecord) -> dict[str, Any]:
        return verdict_message(row, self.config.station)

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

    def refresh_tolerance(self) -> None:
        """Apply the newest learned tolerance version from the store (checked with the threshold, at most
        once a second): what QA taught holds from the next board on, without a restart."""
        now = self._clock()
        if now - self._tolerance_checked < THRESHOLD_CACHE_SECONDS:
            return
        self._tolerance_checked = now
        current = self.store.current_tolerance(self.engine.model_hash)
        if current is None or current.version == self._tolerance_seen:
            return
        self._tolerance_seen = current.version
        record = self.store.tolerance_version(self.engine.model_hash, current.version)
        try:
            self.engine.set_tolerance(LearnedTolerance.stored(record.factor, record.version))
        except InspectorError as exc:  # boards go on being judged by the tolerance in force before
            log.error("learned tolerance version %d not applied: %s", record.version, exc)
            self.store.record_event(self.config.station, "error",
                                    f"learned tolerance version {record.version} not applied: {exc}")
            return
        log.info("learned tolerance version %d applied (%s, by %s)", record.version, record.reason, record.author)

    def refresh(self) -> None:
        """What QA changed in the store (threshold, learned tolerance) applies from the next board on."""
        self.refresh_threshold()
        self.refresh_tolerance()

    def inspect(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        self.refresh()
        return self.engine.inspect_batch(list(images))

    def save_images(self, image: np.ndarray, result: InspectionResult, digest: str, name: str) -> tuple[str, str]:
        """Overlay and heatmap PNGs (written atomically, so a kill never leaves half a file), and for a
        flagged board of a fixtured design the reference board where this board lay
        (`<stem>.reference.png`, which the dashboard finds beside the heatmap for its region zooms).

        A picture that cannot be written (disk full, folder gone) costs the picture, never the
        verdict: its path stays empty, an error event says why, and the board is stored as usual.
        """
        from inspector.core import render

        # The longest picture name must still fit the filesystem's 255 bytes (a 244-byte board name lost
        # its heatmap before): the stem is shortened, the digest prefix keeps it unique.
        stem = fit_name(Path(name).stem, f"{digest[:16]}-", NAME_MAX_BYTES - len(LONGEST_PICTURE_SUFFIX))
        pictures = [("overlay", lambda: render.overlay(image, result)), ("heatmap", lambda: render.heatmap_image(result))]
        if result.reconstruction is not None:  # inspect.save_reconstruction: the dashboard finds it by name
            pictures.append(("reconstruction", lambda: render.reconstruction_image(result)))
        # The Engine protocol promises no reference; the Inspector of a fixtured design has one. Only
        # flagged boards are reviewed, so only they pay for the extra file.
        reference = getattr(getattr(self.engine, "registration", None), "reference", None)
        if reference is not None and result.verdict != "pass":
            pictures.append(("reference", lambda: render.reference_image(reference, result, image.shape)))
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
                     extra_timings: dict[str, float] | None = None, raw_name: str | None = None,
                     part_id: str = "") -> PublishedVerdict:
        regions = [region.to_dict() for region in result.regions]
        timings = {**result.timings_ms, **(extra_timings or {})}
        inspection_id = self.store.record_inspection(
            station=self.config.station, input_sha256=digest, model_hash=result.model_hash, verdict=result.verdict,
            source_path=source_path, source_name=name, score=result.score, threshold=result.threshold,
            regions=regions, image_path=image_path, overlay_path=overlay_path, heatmap_path=heatmap_path,
            threshold_version=result.calibration_version, threshold_source=result.threshold_source, timings=timings,
            source_name_raw=raw_name, publish=True, tolerance_version=result.tolerance_version,
            silenced_regions=[region.to_dict() for region in result.silenced_regions], part_id=part_id or None,
        )
        self.fault("committed")
        verdict = PublishedVerdict(inspection_id, name, digest, result.verdict, float(result.score), float(result.threshold),
                          regions, image_path, overlay_path, result.model_hash, result.calibration_version,
                          self.config.station, threshold_source=result.threshold_source)
        self.metrics.observe(result.verdict, self._clock() - started)
        self._published_later()
        self.fault("published")
        return verdict

    def store_error(self, *, digest: str, name: str, source_path: str, image_path: str, reason: str,
                    raw_name: str | None = None, event: bool = True, part_id: str = "") -> int:
        """An `error` row with the reason, published like any verdict. The same input quarantined before
        keeps its row and is published again (the line hears of every input, repeats included)."""
        existing = self.store.find_inspection(digest, self.engine.model_hash)
        if existing is not None:
            if event:
                self.store.record_event(self.config.station, "quarantine", f"{reason} (again: board #{existing})")
            self.metrics.error()
            self.resend(existing)
            return existing
        inspection_id = self.store.record_inspection(
            station=self.config.station, input_sha256=digest, model_hash=self.engine.model_hash, verdict="error",
            source_path=source_path, source_name=name, image_path=image_path, error=reason,
            source_name_raw=raw_name, publish=True, part_id=part_id or None,
        )
        self.fault("committed")
        if event:  # `event=False`: an answer the feed reports its own way (the camera's "not inspected")
            self.store.record_event(self.config.station, "quarantine", reason)
        self.metrics.error()
        self._published_later()
        self.fault("published")
        return inspection_id

    def resend(self, inspection_id: int) -> None:
        """A board sent again (or resumed after a crash): its stored verdict reaches the line again."""
        self.store.enqueue_verdict(inspection_id)
        self._published_later()

    def publish_pending(self) -> int:
        """One pass over the due verdicts of this station (publisher.py); returns how many the line took."""
        return self.publisher.publish_due()

    def _published_later(self) -> None:
        """After a commit: the publisher thread takes it from here; without one (a one-off processor in a
        script or a test), publish in place as before."""
        self.metrics.verdict_queued()
        if self.publisher.running:
            self.publisher.wake()
        else:
            self.publish_pending()

    def start_publishing(self) -> None:
        """Connect the line's outputs (MQTT, OPC UA) and start the publisher thread."""
        self.lineout.start()
        self.lineout.station_state(online=True, ready=True)
        self.publisher.start()

    def stop_publishing(self, *, drain: bool) -> None:
        self.publisher.stop(drain=drain)
        self.lineout.station_state(online=False, ready=False)
        self.lineout.close()


def load_engine(bundle: Path, inspect_config: InspectConfig) -> Engine:
    from inspector.core.engine import Inspector

    return Inspector.load(bundle, inspect_config)


def make_processor(engine: Engine, store: Store, config: RunnerConfig, overlays_dir: Path,
                   bundle: Path | None = None, stream: TextIO | None = None,
                   lineout: LineoutConfig | None = None, on_trigger: TriggerCallback | None = None) -> Processor:
    """A processor for one station: its line outputs (stdout, hook, and the `[lineout.*]` ones, not started
    until `start_publishing`) and its publisher."""
    metrics = Metrics()

    def hook_failed(detail: str) -> None:
        log.warning("%s", detail)
        metrics.error()
        store.record_event(config.station, "error", detail)

    outputs = make_outputs(lineout, config.station, on_trigger) if lineout is not None else []
    line = LineOut(json_lines=config.json_lines, hook=config.hook, on_hook_failure=hook_failed, stream=stream,
                   outputs=outputs, metrics=metrics)
    store.register_model(engine.model_hash, str(bundle or ""), {})
    return Processor(engine, store, config, metrics, line, overlays_dir)


class MaskSecrets(logging.Filter):
    """Masks URL passwords (database, camera) in every log line; control characters are escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message).replace("\r", "\\r").replace("\n", "\\n")
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging() -> None:
    # Logs go to stderr; stdout carries only the JSON verdict lines.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskSecrets) for f in handler.filters):
            handler.addFilter(MaskSecrets())
