"""Good-board images for training: discovery, decoding, hold-out split, data hash, random crops.

Decoded images are cached in memory (boards are small) as uint8 in the bundle's channel count;
every pixel the model sees goes through `inspector.core.preprocess.preprocess` with the bundle spec.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.core.imageio import decode_image, good_image_paths
from inspector.core.preprocess import PreprocessSpec, preprocess, to_channels
from inspector.errors import ConfigError


def is_colour(image: np.ndarray) -> bool:
    """True when the channels actually differ (a gray board saved as RGB is still gray)."""
    if image.ndim == 2:
        return False
    b, g, r = image[:, :, 0], image[:, :, 1], image[:, :, 2]
    return bool(np.any(b != g) or np.any(g != r))


@dataclass
class GoodImages:
    """Decoded good boards split into a training part and a held-back part."""

    channels: int
    train: list[np.ndarray]
    holdout: list[np.ndarray]
    train_paths: list[Path]
    holdout_paths: list[Path]
    data_sha256: str
    source: Path


def load_good_images(data: Path, *, channels: str, holdout_fraction: float, seed: int) -> GoodImages:
    """Decode every image once, choose the channel count, hold back a seeded fraction."""
    paths = good_image_paths(data, "train/good")
    folder = paths[0].parent
    digest = hashlib.sha256()
    decoded: list[np.ndarray] = []
    for path in paths:  # sorted, so the hash does not depend on directory order
        blob = path.read_bytes()
        digest.update(blob)
        decoded.append(decode_image(blob, path))
    if channels == "auto":
        count = 3 if any(is_colour(image) for image in decoded) else 1
    elif channels in ("gray", "color"):
        count = 1 if channels == "gray" else 3
    else:
        raise ConfigError(f"channels must be auto, gray or color, got {channels!r}")
    decoded = [to_channels(image, count) for image in decoded]
    if not 0.0 <= holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if len(paths) < 2:
        raise ConfigError(f"{folder}: need at least 2 good images (one to train, one to hold back), got {len(paths)}")
    n_hold = min(len(paths) - 1, max(1, round(len(paths) * holdout_fraction)))
    order = list(range(len(paths)))
    random.Random(seed).shuffle(order)
    hold = sorted(order[:n_hold])
    train = sorted(order[n_hold:])
    return GoodImages(
        channels=count,
        train=[decoded[i] for i in train],
        holdout=[decoded[i] for i in hold],
        train_paths=[paths[i] for i in train],
        holdout_paths=[paths[i] for i in hold],
        data_sha256=digest.hexdigest(),
        source=folder,
    )


def source_crop_size(crop_size: int, spec: PreprocessSpec) -> int:
    """Side of the full-resolution window that `preprocess` turns into at least `crop_size` pixels."""
    return int(np.ceil(crop_size / spec.scale)) + (0 if spec.scale == 1.0 else 1)


def window_origin(image: np.ndarray, side: int, rng: np.random.Generator) -> tuple[int, int]:
    """(y, x) of a random side x side window of the image."""
    height, width = image.shape[:2]
    if height < side or width < side:
        raise ConfigError(f"crop of {side} px does not fit an image of {width}x{height}; lower crop_size")
    return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))


def random_window(image: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    y, x = window_origin(image, side, rng)
    return image[y:y + side, x:x + side]


def to_model_crop(window: np.ndarray, crop_size: int, spec: PreprocessSpec) -> np.ndarray:
    """Preprocess a full-resolution window and cut exactly crop_size x crop_size from it."""
    tensor = preprocess(np.ascontiguousarray(window), spec)
    return tensor[:, :crop_size, :crop_size]
