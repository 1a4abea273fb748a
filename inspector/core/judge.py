"""The judge stage of `Inspector` (core/engine.py): map -> regions -> verdict, and what it judges with.

`judge` takes a board's raw smoothed map (`Analysis`, from `run`) to its `InspectionResult`: the map
on the calibrated scale (the edge allowance divided out), moved back onto the board as photographed;
with a learned tolerance, the same map divided by it first, and the regions it silenced; the image
score, the regions over the pixel threshold, the verdict. It judges with one calibration version's
thresholds (QA's image threshold may replace the bundle's) and the learned tolerance, both set here.
A part of `Inspector`, apart like the store's mixins: `Inspector` is the class to use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from inspector.config import InspectConfig
from inspector.core import scoring
from inspector.core.atlas import Atlas
from inspector.core.edges import EdgeAllowance
from inspector.core.fixture import area_on_board
from inspector.core.interface import Analysis, Calibration
from inspector.core.preprocess import PreprocessSpec, working_size
from inspector.core.registration import Registration
from inspector.core.results import InspectionResult, Region, boxes_meet
from inspector.core.scoring import ScoringSpec
from inspector.core.tolerance import LearnedTolerance
from inspector.errors import BundleError, ConfigError


class JudgeStage:
    """`Inspector`'s judge stage, its thresholds and its learned tolerance."""

    # The engine's own, set by `Inspector.__init__`.
    source: str
    spec: PreprocessSpec
    scoring: ScoringSpec
    config: InspectConfig
    model_hash: str
    registration: Registration | None
    atlas: Atlas | None
    roi: np.ndarray | None
    threshold_source: str
    tolerance: LearnedTolerance | None

    # ---------------------------------------------------------------- what it judges with
    def _set_calibration(self, calibration: Calibration | None) -> None:
        """Thresholds, map scale and edge allowance of a calibration version (None: uncalibrated). The
        image threshold and version are apart so QA's threshold can replace them (`set_image_threshold`)."""
        self.calibration = calibration
        self.calibration_version = calibration.version if calibration else 0
        self.image_threshold = calibration.image_threshold if calibration else math.inf
        self.pixel_threshold = calibration.pixel_threshold if calibration else math.inf
        self.pixel_scale = calibration.pixel_scale if calibration else 1.0
        self.edges: EdgeAllowance | None = calibration.edges if calibration else None

    def set_image_threshold(self, value: float, version: int) -> None:
        """Apply a QA threshold version from the store (pixel threshold and normaliser unchanged)."""
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"image threshold must be a positive number, got {value!r}")
        self.image_threshold = float(value)
        self.calibration_version = int(version)
        self.threshold_source = "qa"

    @property
    def tolerance_version(self) -> int:
        return self.tolerance.version if self.tolerance is not None else 0

    @property
    def working_shape(self) -> tuple[int, int]:
        """Height, width of a registered board's maps (the reference at working resolution): the shape
        of a per-position map such as the learned tolerance."""
        if self.registration is None:
            raise ConfigError(f"{self.source}: boards of this bundle are not registered: no working shape")
        height, width = self.registration.reference.shape[:2]
        return working_size(height, width, self.spec)

    def set_tolerance(self, tolerance: LearnedTolerance | None) -> None:
        """Apply a learned tolerance version from the store from the next board on (None: none)."""
        if tolerance is not None:
            if self.registration is None:
                raise ConfigError(f"{self.source}: a learned tolerance needs boards registered to one reference "
                                  "(a fixtured design); this bundle has no reference")
            expected = self.working_shape
            if tolerance.factor.shape != expected:
                raise ConfigError(f"{self.source}: learned tolerance version {tolerance.version} is "
                                  f"{tolerance.factor.shape[1]}x{tolerance.factor.shape[0]}, this bundle's maps "
                                  f"{expected[1]}x{expected[0]}: it was taught on another bundle")
        self.tolerance = tolerance

    # ---------------------------------------------------------------- stage 3: judge
    def judge(self, analyses: Sequence[Analysis]) -> list[InspectionResult]:
        """Verdicts for analysed boards (BundleError when the engine is uncalibrated)."""
        return [self._result(analysis) for analysis in analyses]

    @property
    def judged_per_position(self) -> bool:
        """Registered boards get no edge allowance: their per-position model judges the border too,
        and the strip alignment makes up at the border is cleared (`Inspector._judge_positions`)."""
        return self.atlas is not None or self.registration is not None

    def anomaly_map(self, analysis: Analysis, pixel_scale: float | None = None,
                    edges: EdgeAllowance | None = None) -> np.ndarray:
        """Calibrated-scale map at the input resolution (`edges`: the edge allowance to divide out;
        the bundle's own is `self.edges`)."""
        smoothed = analysis.smoothed if edges is None else edges.apply(analysis.smoothed)
        normalised = scoring.normalise(smoothed, pixel_scale or self.pixel_scale)
        height, width = analysis.input_shape
        if normalised.shape != (height, width):
            normalised = cv2.resize(normalised, (width, height), interpolation=cv2.INTER_LINEAR)
        if analysis.warp is not None:  # from the reference frame back onto the board as photographed
            normalised = cv2.warpAffine(normalised, analysis.warp.astype(np.float32), (width, height),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return normalised

    def _reconstruction_image(self, analysis: Analysis) -> np.ndarray:
        pixels = analysis.reconstruction * np.float32(self.spec.std) + np.float32(self.spec.mean)
        pixels = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
        height, width = analysis.input_shape
        if pixels.shape[:2] != (height, width):
            pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
        return pixels

    def _result(self, analysis: Analysis) -> InspectionResult:
        if self.calibration is None:
            raise BundleError(f"{self.source}: the model is not calibrated; it cannot give verdicts")
        start = time.perf_counter()
        tolerated = analysis if self.tolerance is None else replace(analysis, smoothed=self.tolerance.apply(analysis.smoothed))
        amap = self.anomaly_map(tolerated, edges=self.edges)
        score = scoring.image_score(amap, self.scoring)
        regions = scoring.regions_at(amap, self.pixel_threshold, self.scoring, self.config.min_region_area)
        silenced = self._silenced(analysis, regions) if self.tolerance is not None else []
        verdict = scoring.decide_verdict(score, self.image_threshold, regions, self.config.review_band)
        recon = self._reconstruction_image(analysis) if self.config.save_reconstruction else None
        postprocess = analysis.timings.postprocess + (time.perf_counter() - start) * 1e3
        timings = replace(analysis.timings, postprocess=postprocess).record()
        return InspectionResult(score=score, threshold=self.image_threshold, verdict=verdict, regions=regions,
                                inspection_area=area_on_board(self.roi, self.registration, analysis.warp, analysis.input_shape),
                                anomaly_map=amap, reconstruction=recon, model_hash=self.model_hash,
                                calibration_version=self.calibration_version, timings_ms=timings,
                                threshold_source=self.threshold_source,
                                pixel_threshold=self.pixel_threshold, warp=analysis.warp,
                                silenced_regions=silenced, tolerance_version=self.tolerance_version)

    def _silenced(self, analysis: Analysis, shown: list[Region]) -> list[Region]:
        """Regions the map without the learned tolerance shows that the tolerated map does not."""
        smoothed = analysis.smoothed if self.edges is None else self.edges.apply(analysis.smoothed)
        # Most boards show nothing untolerated: the bilinear resize and the warp (border 0) never raise
        # a non-negative map's peak, so a working-resolution peak under the line (with 1e-6 for their
        # float rounding) spares the full-resolution map.
        peak = max(cv2.minMaxLoc(smoothed)[1], 0.0)
        if self.pixel_scale > 0 and peak / self.pixel_scale * (1 + 1e-6) < self.pixel_threshold:
            return []
        untolerated = self.anomaly_map(replace(analysis, smoothed=smoothed))
        if cv2.minMaxLoc(untolerated)[1] < self.pixel_threshold:
            return []
        every = scoring.regions_at(untolerated, self.pixel_threshold, self.scoring, self.config.min_region_area)
        return [region for region in every if not any(boxes_meet(region.bbox, other.bbox) for other in shown)]
