"""The engine interface: what feeds, calibration and the self-test need of `core.engine.Inspector`.

Two views of one engine, so a test double implements only what its caller uses: the feeds see an
`Engine` (inspect boards, take QA's threshold), calibration and the self-test an `Analyser` (raw
maps before thresholds). `Inspector` is both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from inspector.core.results import InspectionResult

if TYPE_CHECKING:
    from inspector.core.edges import EdgeAllowance
    from inspector.core.scoring import ScoringSpec
    from inspector.core.tolerance import LearnedTolerance


@dataclass
class Analysis:
    """Working-resolution outputs for one image before calibration is applied."""

    input_shape: tuple[int, int]  # height, width of the original image
    smoothed: np.ndarray  # raw smoothed error map (working resolution)
    reconstruction: np.ndarray  # CxHxW float32 (working resolution)
    timings: dict[str, float]
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
    timings: dict[str, float]
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
