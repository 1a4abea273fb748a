"""Input corruptions for the denoising autoencoder: it sees a damaged crop and must restore the clean one.

What the network learns to erase is exactly what it will flag later, so the corruptions are
*un-board-like*: irregular blobs, thin scratches and lines, noise, and patches of the board pasted
where they do not belong. Deliberately absent: small round dots or rings. On real boards a
denoiser trained with round spots learned to erase legitimate drill holes in pads and then
flagged every pad; blobs here are irregular, elongated polygons instead.
"""

from __future__ import annotations

import cv2
import numpy as np

CORRUPT_PROBABILITY = 0.7  # some clean inputs keep the identity mapping honest on good boards


def _irregular_blob_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height, width = shape
    # Up to a quarter of the crop: stains and burns can be large, and a large blob is what a
    # plain autoencoder reproduces most faithfully (it looks like a component body to it).
    radius = rng.uniform(4, max(5.0, min(height, width) / 4))
    aspect = rng.uniform(1.4, 2.5)  # elongated: never a round dot
    angle = rng.uniform(0, np.pi)
    vertices = int(rng.integers(6, 11))
    theta = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    radii = radius * rng.uniform(0.45, 1.0, vertices)  # jagged outline, far from a circle
    x = radii * np.cos(theta) * aspect
    y = radii * np.sin(theta)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    px = cx + x * np.cos(angle) - y * np.sin(angle)
    py = cy + x * np.sin(angle) + y * np.cos(angle)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.stack([px, py], 1).round().astype(np.int32)], 1)
    return mask.astype(bool)


def _scratch_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height, width = shape
    points = [np.array([rng.uniform(0, width), rng.uniform(0, height)])]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(1, 4))):  # a slightly bent polyline
        heading += rng.uniform(-0.5, 0.5)
        step = rng.uniform(8, max(9.0, min(height, width) / 3))
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    mask = np.zeros(shape, np.uint8)
    cv2.polylines(mask, [np.array(points).round().astype(np.int32)], False, 1, thickness=int(rng.integers(1, 5)))
    return mask.astype(bool)


def _paste_patch(crop: np.ndarray, rng: np.random.Generator) -> None:
    _, height, width = crop.shape
    side = int(rng.integers(6, max(7, min(height, width) // 4)))
    sy, sx = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    dy, dx = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop[:, dy:dy + side, dx:dx + side] = crop[:, sy:sy + side, sx:sx + side].copy()


def corrupt(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A corrupted copy of a float32 CxHxW crop (works on any normalisation: uses the crop's range)."""
    if rng.random() > CORRUPT_PROBABILITY:
        return crop
    out = crop.copy()
    low, high = float(crop.min()), float(crop.max())
    span = max(high - low, 1e-3)
    shape = crop.shape[1:]
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["blob", "scratch", "patch", "noise"], p=[0.35, 0.3, 0.2, 0.15])
        if kind == "patch":
            _paste_patch(out, rng)
            continue
        if kind == "noise":
            out += rng.normal(0, 0.06 * span, size=out.shape).astype(np.float32)
            continue
        mask = _irregular_blob_mask(shape, rng) if kind == "blob" else _scratch_mask(shape, rng)
        # Half the time the board's own extreme (copper on mask, mask on copper: opens, shorts,
        # spurs, bites on bare boards), otherwise any shade with a per-channel tint (stains, burns).
        if rng.random() < 0.7:
            value = np.full((out.shape[0], 1), high if rng.random() < 0.5 else low)
        else:
            value = low + span * rng.uniform(0.0, 1.0, size=(out.shape[0], 1))
        out[:, mask] = value.astype(np.float32)
    return np.clip(out, low, high, out=out)
