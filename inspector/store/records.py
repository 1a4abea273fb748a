"""Plain, detached records the store hands out (no live ORM objects leave a session)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from inspector.store import schema
from inspector.verdicts import FLAGGED_VERDICTS, StoredVerdict


def _aware(value: datetime | None) -> datetime | None:
    # SQLite drops the zone; everything is written in UTC, so naive values read back are UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class StationRecord:
    name: str
    state: str
    last_seen: datetime
    last_image: str
    data_dir: str = ""  # where its feed keeps images ("" before schema version 7)
    feed: str = ""  # "watch" or "camera"

    @classmethod
    def of(cls, row: schema.Station) -> StationRecord:
        return cls(row.name, row.state, _aware(row.last_seen), row.last_image or "",  # type: ignore[arg-type]
                   row.data_dir or "", row.feed or "")


@dataclass(frozen=True)
class ModelRecord:
    hash: str
    bundle_path: str
    metadata: dict[str, Any]
    first_seen: datetime

    @classmethod
    def of(cls, row: schema.Model) -> ModelRecord:
        return cls(row.hash, row.bundle_path or "", dict(row.metadata_json or {}), _aware(row.first_seen))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ThresholdRecord:
    id: int
    model_hash: str
    version: int
    image_threshold: float
    pixel_threshold: float | None
    author: str
    reason: str
    created_at: datetime
    previous_image_threshold: float | None
    previous_pixel_threshold: float | None

    @classmethod
    def of(cls, row: schema.ThresholdVersion) -> ThresholdRecord:
        return cls(row.id, row.model_hash, row.version, row.image_threshold, row.pixel_threshold, row.author,
                   row.reason, _aware(row.created_at), row.previous_image_threshold,  # type: ignore[arg-type]
                   row.previous_pixel_threshold)


@dataclass(frozen=True)
class ToleranceRecord:
    """One learned tolerance version; the maps and the figure only when asked for (`with_maps`)."""

    id: int
    model_hash: str
    version: int
    author: str
    reason: str
    created_at: datetime
    through_review_id: int
    restored_from: int | None
    summary: dict[str, Any]
    factor: bytes | None = None
    protected: bytes | None = None
    figure: bytes | None = None

    @classmethod
    def of(cls, row: schema.ToleranceVersion, with_maps: bool = False) -> ToleranceRecord:
        maps = (row.factor, row.protected, row.figure) if with_maps else (None, None, None)
        return cls(row.id, row.model_hash, row.version, row.author, row.reason,
                   _aware(row.created_at), row.through_review_id, row.restored_from,  # type: ignore[arg-type]
                   dict(row.summary or {}), *maps)


@dataclass(frozen=True)
class InspectionRecord:
    id: int
    station: str
    source_path: str
    source_name: str
    input_sha256: str
    created_at: datetime
    score: float | None
    threshold: float | None
    verdict: StoredVerdict
    regions: list[dict[str, Any]]
    image_path: str
    overlay_path: str
    heatmap_path: str
    model_hash: str
    threshold_version: int | None
    timings: dict[str, float]
    error: str | None
    threshold_source: str | None = None
    source_name_raw: str | None = None  # hex of the name's bytes when source_name escapes them
    tolerance_version: int | None = None  # the learned tolerance applied (None/0: none)
    silenced_regions: list[dict[str, Any]] = field(default_factory=list)  # kept under the line by it
    part_id: str | None = None  # what the line's trigger called the part (schema 9)

    @property
    def flagged(self) -> bool:
        return self.verdict in FLAGGED_VERDICTS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def of(cls, row: schema.Inspection) -> InspectionRecord:
        return cls(
            id=row.id, station=row.station, source_path=row.source_path or "", source_name=row.source_name or "",
            input_sha256=row.input_sha256, created_at=_aware(row.created_at), score=row.score,  # type: ignore[arg-type]
            threshold=row.threshold, verdict=cast(StoredVerdict, row.verdict), regions=list(row.regions or []),
            image_path=row.image_path or "", overlay_path=row.overlay_path or "", heatmap_path=row.heatmap_path or "",
            model_hash=row.model_hash, threshold_version=row.threshold_version, timings=dict(row.timings or {}),
            error=row.error, threshold_source=row.threshold_source, source_name_raw=row.source_name_raw,
            tolerance_version=row.tolerance_version, silenced_regions=list(row.silenced_regions or []),
            part_id=row.part_id,
        )


@dataclass(frozen=True)
class ReviewRecord:
    id: int
    inspection_id: int
    operator: str
    decision: str
    defect_type: str
    comment: str
    created_at: datetime

    @classmethod
    def of(cls, row: schema.Review) -> ReviewRecord:
        return cls(row.id, row.inspection_id, row.operator, row.decision, row.defect_type or "", row.comment or "",
                   _aware(row.created_at))  # type: ignore[arg-type]


@dataclass(frozen=True)
class EventRecord:
    id: int
    station: str
    kind: str
    detail: str
    created_at: datetime

    @classmethod
    def of(cls, row: schema.Event) -> EventRecord:
        return cls(row.id, row.station, row.kind, row.detail or "", _aware(row.created_at))  # type: ignore[arg-type]


@dataclass(frozen=True)
class VerdictCounts:
    """Totals for a dashboard header."""

    by_verdict: dict[str, int] = field(default_factory=dict)
    unreviewed_flagged: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_verdict.values())
