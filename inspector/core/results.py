"""What one inspection produces: plain data, JSON-serialisable, shared by CLI, runner and store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from inspector.verdicts import Verdict


@dataclass(frozen=True)
class Region:
    """One connected component of the thresholded anomaly map, in input-image pixels."""

    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 (x2/y2 exclusive)
    area: int  # pixels
    peak: float  # max normalised score inside the region
    mean: float  # mean normalised score inside the region
    centroid: tuple[float, float]  # x, y

    @property
    def score(self) -> float:
        return self.peak

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bbox"] = list(self.bbox)
        data["centroid"] = list(self.centroid)
        data["score"] = self.peak
        return data


def boxes_meet(a: Sequence[int], b: Sequence[int]) -> bool:
    """Do boxes (x1, y1, x2, y2, x2/y2 exclusive) `a` and `b` share a pixel? Boxes that only touch do not."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@dataclass
class InspectionResult:
    """The outcome of inspecting one board image."""

    score: float  # image score on the calibrated scale (same scale for every board)
    threshold: float  # image threshold on the same scale
    verdict: Verdict
    regions: list[Region]
    anomaly_map: np.ndarray  # float32 HxW at the input resolution, on the calibrated scale
    reconstruction: np.ndarray | None  # uint8 image at the input resolution (same channels as the model)
    model_hash: str
    calibration_version: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Where the image threshold came from: "bundle" (its calibration.json, version = calibration
    # version) or "qa" (a threshold version QA saved in the store, version = that row's version).
    threshold_source: str = "bundle"
    # The calibrated pixel threshold on the anomaly map's scale (regions are map >= this); renderers
    # put red there. None when the producer did not say (renderers then use `threshold`).
    pixel_threshold: float | None = None
    # The bundle's inspection area on this board (uint8 HxW, 255 = inspected), or None for the whole
    # image; overlays outline it. Not part of the summary.
    inspection_area: np.ndarray | None = None
    # Registered boards: the 2x3 affine from the reference board's frame to this board as photographed
    # (what maps the reference onto the board for side-by-side views); None when not registered.
    warp: np.ndarray | None = None
    # Regions the map showed that a learned tolerance (inspector/core/tolerance.py) kept under the
    # region line: where operators taught the station a false alarm. Not counted in the verdict.
    silenced_regions: list[Region] = field(default_factory=list)
    tolerance_version: int = 0  # the learned tolerance applied (0 = none)

    def summary(self) -> dict[str, Any]:
        """The JSON-serialisable part (no arrays)."""
        return {
            "score": float(self.score),
            "threshold": float(self.threshold),
            "verdict": self.verdict,
            "regions": [region.to_dict() for region in self.regions],
            "model_hash": self.model_hash,
            "calibration_version": self.calibration_version,
            "threshold_source": self.threshold_source,
            "tolerance_version": self.tolerance_version,
            "silenced_regions": [region.to_dict() for region in self.silenced_regions],
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
        }
