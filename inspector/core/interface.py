"""The engine interface: what feeds, calibration and the self-test need of `core.engine.Inspector`.

Two views of one engine, so a test double implements only what its caller uses: the feeds see an
`Engine` (inspect boards, take QA's threshold), calibration and the self-test an `Analyser` (raw
maps before thresholds). `Inspector` is both.

The records its three stages pass on: `prepare` -> `PreparedBoard`, `run` -> `Analysis`, `judge` ->
`InspectionResult`; each carries its board's `Timings` (what each stage cost), and the thresholds
they are judged with are one `Calibration` (a version of calibration.json, typed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from inspector.core.edges import EdgeAllowance
from inspector.core.results import InspectionResult
from inspector.errors import BundleError

if TYPE_CHECKING:
    from inspector.core.scoring import ScoringSpec
    from inspector.core.tolerance import LearnedTolerance


@dataclass(frozen=True)
class Calibration:
    """One calibration version, typed: what the engine judges with; `record` is the version as stored
    (calibration.json, written back unchanged)."""

    version: int
    image_threshold: float
    pixel_threshold: float
    pixel_scale: float  # the normaliser: raw smoothed error / pixel_scale = the calibrated map
    edges: EdgeAllowance | None  # None: calibrated before the edge allowance existed
    record: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, record: dict[str, Any], source: str) -> Calibration:
        try:  # calibrations from before the edge allowance have none
            edges = EdgeAllowance.from_record(record.get("edge_allowance"))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{source}: the calibration's edge allowance is unreadable ({exc})") from exc
        return cls(int(record["version"]), float(record["image_threshold"]), float(record["pixel_threshold"]),
                   float(record["normaliser"]["pixel_scale"]), edges, record)


@dataclass(frozen=True)
class Timings:
    """What one board cost, in ms, stage by stage: `prepare` sets the first three (registration and light
    normalisation only on registered boards), `run` the model call and the map, `judge` the rest."""

    register: float | None = None
    photometric: float | None = None
    preprocess: float = 0.0
    inference: float = 0.0
    atlas: float | None = None  # per-position model and inspection area, when the bundle has them
    postprocess: float = 0.0

    def record(self) -> dict[str, float]:
        """As stored and published (the keys are the results store's and the line outputs')."""
        named = {"register": self.register, "photometric": self.photometric, "preprocess": self.preprocess,
                 "inference": self.inference, "atlas": self.atlas, "postprocess": self.postprocess}
        timings = {key: value for key, value in named.items() if value is not None}
        timings["total"] = (self.preprocess + self.inference + self.postprocess
                            + (self.register or 0.0) + (self.photometric or 0.0))
        return timings


@dataclass
class Analysis:
    """Working-resolution outputs for one image before calibration is applied."""

    input_shape: tuple[int, int]  # height, width of the original image
    smoothed: np.ndarray  # raw smoothed error map (working resolution)
    reconstruction: np.ndarray  # CxHxW float32 (working resolution)
    timings: Timings
    # Registered boards: 2x3 warp from reference coordinates to the board's own (input pixels); the
    # maps above are in the reference frame, the anomaly map is moved back onto the board.
    warp: np.ndarray | None = None
    group: int = 0  # the group of good boards it was judged against (inspector/core/groups.py)


@dataclass
class PreparedBoard:
    """One board as the model will take it: aligned, light-normalised, scaled and padded."""

    input_shape: tuple[int, int]  # height, width of the original image
    tensor: np.ndarray  # CxHxW float32, padded to the model's multiple
    working: tuple[int, int]  # height, width of the board inside `tensor`
    timings: Timings
    warp: np.ndarray | None = None  # as in Analysis
    group: int = 0  # as in Analysis


class Engine(Protocol):
    """What a feed (folder, camera) needs: verdicts for boards, and QA's threshold applied."""

    model_hash: str
    calibration_version: int
    threshold_source: str
    image_threshold: float

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]: ...

    def set_image_threshold(self, value: float, version: int) -> None: ...

    def set_tolerance(self, tolerance: LearnedTolerance | None) -> None: ...


class Analyser(Protocol):
    """What calibration and the bundle self-test need: raw maps, and the calibrated map of one."""

    @property
    def scoring(self) -> ScoringSpec: ...

    def analyse(self, images: Sequence[np.ndarray]) -> list[Analysis]: ...

    @property
    def judged_per_position(self) -> bool:
        """Whether a per-position model of good boards judges each position (then no edge allowance)."""
        ...

    def anomaly_map(self, analysis: Analysis, pixel_scale: float | None = None,
                    edges: EdgeAllowance | None = None) -> np.ndarray: ...
