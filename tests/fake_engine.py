"""A deterministic stand-in for `inspector.core.engine.Inspector` for runner and camera unit tests.

Score = mean brightness / 100, so a test picks the verdict by the image it writes: brightness
above 100 fails at the default threshold 1.0. Every inspected image is counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inspector.core.results import InspectionResult, Region

MODEL_HASH = "f" * 64


class FakeEngine:
    def __init__(self, threshold: float = 1.0, save_reconstruction: bool = False) -> None:
        self.save_reconstruction = save_reconstruction  # a blurred copy stands in for the model's redrawing
        self.model_hash = MODEL_HASH
        self.calibration_version = 1
        self.threshold_source = "bundle"
        self.image_threshold = threshold
        self.inspected: list[float] = []  # the score of every image inspected, in order
        self.batches: list[int] = []

    def set_tolerance(self, tolerance: object) -> None:
        self.tolerance = tolerance  # the fake judges brightness, not positions: it only records what it got

    def set_image_threshold(self, value: float, version: int) -> None:
        self.image_threshold = float(value)
        self.calibration_version = int(version)
        self.threshold_source = "qa"

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        self.batches.append(len(images))
        return [self._one(image) for image in images]

    def inspect(self, image: np.ndarray) -> InspectionResult:
        return self.inspect_batch([image])[0]

    def _one(self, image: np.ndarray) -> InspectionResult:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        score = float(gray.mean()) / 100.0
        self.inspected.append(score)
        amap = np.full(gray.shape, score, dtype=np.float32)
        failed = score > self.image_threshold
        regions = [Region((0, 0, 4, 4), 16, score, score, (2.0, 2.0))] if failed else []
        return InspectionResult(score=score, threshold=self.image_threshold, verdict="fail" if failed else "pass",
                                regions=regions, anomaly_map=amap, model_hash=self.model_hash,
                                reconstruction=cv2.blur(image, (5, 5)) if self.save_reconstruction else None,
                                calibration_version=self.calibration_version, timings_ms={"model": 0.1},
                                threshold_source=self.threshold_source)


def board(path: str, brightness: int, size: int = 48, seed: int = 0) -> bytes:
    """Write a small PNG whose mean is `brightness` (a little texture keeps each seed's bytes unique)."""
    rng = np.random.default_rng(seed)
    image = np.clip(brightness + rng.integers(-3, 4, (size, size)), 0, 255).astype(np.uint8)
    image[0, 0] = brightness  # keep the mean steady whatever the noise
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    data = encoded.tobytes()
    if path:
        with open(path, "wb") as stream:
            stream.write(data)
    return data
