"""Tiled reconstruction: a board larger than the model's tile through overlapping tiles, blended back
together without seams (bundles whose preprocessing sets `tile_size`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from inspector.core.preprocess import PreprocessSpec


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """Weights that ramp over the overlap so stitched tiles leave no seams (never zero)."""
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - tile, 0) + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def reconstruct_tiled(tensor: np.ndarray, spec: PreprocessSpec,
                      reconstruct: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """One padded CxHxW image through overlapping tiles (`reconstruct`: NCHW tiles -> their
    reconstructions), blended back together."""
    multiple = spec.pad_multiple
    tile = max(multiple, spec.tile_size // multiple * multiple)
    overlap = min(spec.tile_overlap, tile // 2 - 1) if tile > 2 else 0
    channels, height, width = tensor.shape
    grow_h, grow_w = max(0, tile - height), max(0, tile - width)
    if grow_h or grow_w:
        tensor = np.pad(tensor, [(0, 0), (0, grow_h), (0, grow_w)], mode="edge")
    full_h, full_w = tensor.shape[1:]
    stride = tile - overlap
    corners = [(y, x) for y in tile_starts(full_h, tile, stride) for x in tile_starts(full_w, tile, stride)]
    tiles = np.stack([tensor[:, y:y + tile, x:x + tile] for y, x in corners])
    recon_tiles = reconstruct(tiles)
    window = blend_window(tile, overlap)
    total = np.zeros((channels, full_h, full_w), np.float32)
    weight = np.zeros((full_h, full_w), np.float32)
    for (y, x), recon in zip(corners, recon_tiles):
        total[:, y:y + tile, x:x + tile] += recon * window
        weight[y:y + tile, x:x + tile] += window
    return (total / weight)[:, :height, :width]
