"""Edge allowance: how much more error good boards show near the image border, divided out of the map.

A convolutional autoencoder sees only part of its context within a few pixels of the image border,
so it redraws good boards worse there, on every design. On DeepPCB (dev split, default bundle) 31%
of the false regions on good test boards sat within 24 px of the border, a tenth of the board's
area, and on board groups the model had not seen the region line was set by such border spots on
the held-back boards. Calibration measures, for each distance from the border up to `REACH_PX`,
how far the held-back good boards' high quantile there exceeds the interior's, and the map is
divided by that ratio (never by less than 1), so a region near the border must stand out from what
good boards show near the border.

Which quantile: the 99.9th. The 99.99th (the first version) rests on the few dozen hottest pixels at
each distance, i.e. on one or two spots: on a second training run of the DeepPCB defaults it found
no allowance at all, although 41% of its held-back boards had their hottest pixel within 24 px of the
border (14% of the area). Measured on three sets of cached maps (dev split seeds 0 and 1, unseen
groups), region recall at 0.5 false regions a good board: none 0.861 / 0.830 / 0.485, 99.99th 0.878 /
0.830 / 0.761, 99.9th 0.888 / 0.852 / 0.788 (docs/results.md). A reach of 40, 48 or 64 px did no better.

It is part of a calibration version (`edge_allowance` in calibration.json), refitted by every
`inspector calibrate`, and used only by bundles without a per-position model: a registered
bundle's per-position model already judges each position, the border included, against good boards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

REACH_PX = 32  # working-resolution pixels from the border that get their own allowance
QUANTILE = 0.999  # of the good boards' map values, per distance and in the interior
MAX_FACTOR = 8.0  # a bound, so a border the network never learned cannot hide everything there
FIRST_QUANTILE = 0.9999  # what the first edge allowances were fitted at; their records do not say


def _distances(shape: tuple[int, int]) -> np.ndarray:
    """Distance of each pixel to the nearest image border (0 on the border)."""
    height, width = shape
    rows = np.minimum(np.arange(height), np.arange(height)[::-1])[:, None]
    columns = np.minimum(np.arange(width), np.arange(width)[::-1])[None, :]
    return np.minimum(rows, columns)


@dataclass(frozen=True)
class EdgeAllowance:
    """Divisors (>= 1) of the map at distance 0, 1, ... from the border; 1 beyond them."""

    factors: tuple[float, ...]
    quantile: float = QUANTILE  # the one it was fitted at (FIRST_QUANTILE in records that lack it)
    _weights: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def weights(self, shape: tuple[int, int]) -> np.ndarray:
        """float32 multipliers (1 / factor) for a map of `shape`, built once per shape."""
        shape = (int(shape[0]), int(shape[1]))
        if shape not in self._weights:
            distance = _distances(shape)
            inverse = np.ones(len(self.factors) + 1, np.float32)
            inverse[:-1] = 1.0 / np.asarray(self.factors, np.float32)
            self._weights[shape] = inverse[np.minimum(distance, len(self.factors))]
        return self._weights[shape]

    def apply(self, smoothed: np.ndarray) -> np.ndarray:
        return cv2.multiply(smoothed, self.weights(smoothed.shape[:2]), dtype=cv2.CV_32F)

    def to_record(self) -> dict[str, Any]:
        return {"factors": [round(value, 6) for value in self.factors], "reach_px": len(self.factors),
                "quantile": self.quantile, "rule": "map / (good boards' quantile at this distance from the border / "
                                              "the interior's), never below 1"}

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> EdgeAllowance | None:
        if not record:
            return None
        factors = tuple(float(value) for value in record["factors"])
        if not factors or not all(np.isfinite(value) and value >= 1.0 for value in factors):
            raise ValueError(f"edge allowance factors must be finite and >= 1, got {record['factors']!r}")
        return cls(factors, float(record.get("quantile", FIRST_QUANTILE)))


def fit_edge_allowance(maps: Sequence[np.ndarray], reach: int = REACH_PX, quantile: float = QUANTILE
                       ) -> EdgeAllowance | None:
    """The allowance good boards' raw smoothed maps call for; None when the maps are too small to
    have an interior, or show no error in it (nothing to compare the border with)."""
    by_distance: list[list[np.ndarray]] = [[] for _ in range(reach)]
    interior: list[np.ndarray] = []
    # Which pixels lie at each distance depends only on the map's size: found once per size, not
    # again for every board (a calibration's 61 boards of one size spent 1.4 s on it).
    layouts: dict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = {}
    for smoothed in maps:
        shape = (int(smoothed.shape[0]), int(smoothed.shape[1]))
        if shape not in layouts:
            distance = _distances(shape).ravel()
            layouts[shape] = (np.flatnonzero(distance >= reach), [np.flatnonzero(distance == step)
                                                                   for step in range(reach)])
        inside, steps = layouts[shape]
        if inside.size == 0:
            return None
        flat = smoothed.reshape(-1)
        interior.append(flat[inside])
        for step, where in enumerate(steps):
            by_distance[step].append(flat[where])
    if not interior:
        return None
    level = float(np.quantile(np.concatenate(interior), quantile))
    if not level > 0.0:
        return None
    factors = [min(MAX_FACTOR, max(1.0, float(np.quantile(np.concatenate(values), quantile)) / level))
               for values in by_distance]
    return EdgeAllowance(tuple(factors), quantile)
