"""Bundle self-test: the line PC must compute the error maps the export machine computed.

The thresholds in calibration.json were set on maps computed where the bundle was exported. On
another machine the same ONNX graph can compute different maps. The known cases:
- INT8 kernels: on a CPU without VNNI, ONNX Runtime's u8s8 path can saturate;
- a different ONNX Runtime version or execution provider.
Then the verdicts would be quietly wrong. So export records a few held-back good boards and the
maps it computed on them (`selftest.npz`). Loading a bundle computes them again and refuses the
bundle if they differ by more than MAX_RELATIVE_DIFFERENCE.

The maps are stored averaged over BLOCK x BLOCK pixels. That keeps the file small, and it is still
sharp enough to see a kernel that computes differently.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.atomic import atomic_write
from inspector.core.interface import Analyser
from inspector.errors import BundleError

BOARDS = 2  # boards recorded at export
BLOCK = 8  # map pixels averaged per stored value
# Same machine: ~1e-6 (thread scheduling). Another x86 CPU in float32: ~1e-5. A kernel that
# saturates or a wrong provider: several percent and more.
MAX_RELATIVE_DIFFERENCE = 0.05


def _reduced(smoothed: np.ndarray) -> np.ndarray:
    height, width = smoothed.shape
    size = (max(1, width // BLOCK), max(1, height // BLOCK))
    return cv2.resize(smoothed, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def record(engine: Analyser, images: Sequence[np.ndarray], path: Path) -> None:
    """Write `path` (selftest.npz): the first BOARDS images and the maps `engine` computes on them."""
    boards = list(images)[:BOARDS]
    if not boards:
        raise BundleError("self-test: no boards to record")
    arrays: dict[str, Any] = {}
    for index, (image, analysis) in enumerate(zip(boards, engine.analyse(boards))):
        arrays[f"image_{index}"] = image
        arrays[f"map_{index}"] = _reduced(analysis.smoothed)
        arrays[f"max_{index}"] = np.asarray(analysis.smoothed.max(), dtype=np.float32)
    atomic_write(path, lambda stream: np.savez_compressed(stream, **arrays), durable=True)


def difference(engine: Analyser, path: Path) -> float:
    """The largest relative difference between the recorded maps and the ones `engine` computes now."""
    try:
        with np.load(path) as stored:
            count = sum(1 for key in stored.files if key.startswith("image_"))
            images = [stored[f"image_{i}"] for i in range(count)]
            maps = [stored[f"map_{i}"] for i in range(count)]
            maxima = [float(stored[f"max_{i}"]) for i in range(count)]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path}: unreadable self-test file ({exc})") from exc
    if not images or any(image.dtype != np.uint8 for image in images):
        raise BundleError(f"{path}: self-test file holds no uint8 boards")
    worst = 0.0
    for analysis, expected_map, expected_max in zip(engine.analyse(images), maps, maxima):
        computed = _reduced(analysis.smoothed)
        if computed.shape != expected_map.shape:
            raise BundleError(f"{path}: self-test maps are {expected_map.shape}, this machine computes {computed.shape}")
        # NaN compares false everywhere and max() would skip it: a NaN anywhere is a failed test.
        if not (np.isfinite(computed).all() and np.isfinite(expected_map).all() and math.isfinite(expected_max)):
            return math.inf
        scale = max(float(np.mean(np.abs(expected_map))), 1e-12)
        worst = max(worst, float(np.mean(np.abs(computed - expected_map))) / scale,
                    abs(float(analysis.smoothed.max()) - expected_max) / max(expected_max, 1e-12))
    return worst


def check(engine: Analyser, path: Path, source: str) -> float:
    """Raise BundleError when this machine computes the recorded maps differently; else the difference."""
    found = difference(engine, path)
    if not found <= MAX_RELATIVE_DIFFERENCE:
        raise BundleError(
            f"{source}: the model computes different error maps on this machine than where it was exported "
            f"({found:.1%} apart, at most {MAX_RELATIVE_DIFFERENCE:.0%} allowed), so its thresholds do not "
            "hold here. An INT8 bundle on a CPU without VNNI, or on the CUDA provider, does this: re-export it with "
            "`inspector export --precision float32`, or recalibrate it on this machine with `inspector calibrate` "
            "(which makes this machine's maps the reference).")
    return found
