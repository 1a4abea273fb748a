"""The per-position model of good variation ("atlas") for boards registered to one reference.

After registration every board's pixel (x, y) shows the same place of the design. Some places are
hard for the network on *every* good board (connector pins, printed text, a part that leans, the
edge of a glare): their error is high on good boards too and would set the region line for the
whole board. The atlas records, per position, the error level good boards show there (a high
quantile over good boards' smoothed maps, dilated by a few pixels to absorb placement tolerance),
and the runtime judges each board's map against it:

    judged = smoothed error / (strength x atlas level at that position + floor)

`floor` (the median level over the board) keeps quiet surfaces from being divided by almost
nothing: a defect on a quiet surface is judged against the floor and stands out, a fine structure
that is redrawn poorly on every board is judged against its own level and no longer sets the line.

Fitted at export on good training boards through the runtime engine, stored in the bundle as
`atlas.npz`, applied by the engine before normalisation, thresholds and regions (so calibration,
which runs on the same engine, sets its thresholds on judged maps). Torch-free.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.errors import BundleError, ConfigError, InspectorError

MAX_MAPS = 64  # maps used for the fit (the quantile settles long before; bounds memory at 640x640)


@dataclass
class Atlas:
    # float32 HxW, working resolution, reference frame; GxHxW with groups of good boards (inspector/core/groups.py),
    # one level (and floor) per group
    level: np.ndarray
    floor: float | np.ndarray
    quantile: float
    dilate_px: int
    boards: int
    strength: float = 1.0  # share of the per-position level in the divisor (1 = judged fully per position)

    def __post_init__(self) -> None:
        self.level = np.ascontiguousarray(self.level, dtype=np.float32)
        levels = self.level if self.level.ndim == 3 else self.level[None]
        floors = np.broadcast_to(np.asarray(self.floor, np.float32).reshape(-1), (len(levels),))
        self._inverses = [(1.0 / (np.float32(self.strength) * level + floor)).astype(np.float32)
                          for level, floor in zip(levels, floors)]

    @property
    def groups(self) -> int:
        return len(self._inverses)

    def judge(self, smoothed: np.ndarray, group: int = 0) -> np.ndarray:
        """A board's smoothed error map divided by what good boards (of its group) show at each position."""
        inverse = self._inverses[group if 0 <= group < len(self._inverses) else 0]
        if smoothed.shape != inverse.shape:
            raise InspectorError(f"error map {smoothed.shape[1]}x{smoothed.shape[0]} does not match the per-position "
                                 f"model of good boards ({inverse.shape[1]}x{inverse.shape[0]})")
        return cv2.multiply(smoothed, inverse)

    @classmethod
    def of_groups(cls, atlases: Sequence[Atlas]) -> Atlas:
        """One atlas holding each group's level and floor (same settings)."""
        first = atlases[0]
        if len(atlases) == 1:
            return first
        return cls(level=np.stack([a.level for a in atlases]), floor=np.array([float(a.floor) for a in atlases], np.float32),
                   quantile=first.quantile, dilate_px=first.dilate_px, boards=sum(a.boards for a in atlases),
                   strength=first.strength)

    # ------------------------------------------------------------------ files
    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, level=self.level, floor=np.asarray(self.floor, np.float32),
                            quantile=np.float32(self.quantile),
                            dilate_px=np.int32(self.dilate_px), boards=np.int32(self.boards),
                            strength=np.float32(self.strength))
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Atlas:
        try:
            with np.load(path, allow_pickle=False) as data:
                floor = np.asarray(data["floor"], np.float32)
                return cls(level=data["level"], floor=float(floor) if floor.ndim == 0 else floor,
                           quantile=float(data["quantile"]),
                           dilate_px=int(data["dilate_px"]), boards=int(data["boards"]),
                           strength=float(data["strength"]) if "strength" in data else 1.0)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise BundleError(f"{path}: unreadable per-position model ({exc})") from exc

    def describe(self) -> dict[str, Any]:
        floors = np.asarray(self.floor, np.float32).reshape(-1)
        levels = self.level if self.level.ndim == 3 else self.level[None]
        described: dict[str, Any] = {
            "boards": self.boards, "quantile": self.quantile, "dilate_px": self.dilate_px,
            "floor": float(floors[0]) if floors.size == 1 else [float(f) for f in floors], "strength": self.strength,
            "level_max_over_floor": max(float(level.max() / floor) for level, floor in
                                        zip(levels, np.broadcast_to(floors, (len(levels),))))}
        if self.groups > 1:
            described["groups"] = self.groups
        return described


def fit_atlas(maps: Sequence[np.ndarray], *, quantile: float = 0.9, dilate_px: int = 3,
              floor_quantile: float = 0.5, strength: float = 1.0) -> Atlas:
    """The atlas from good boards' smoothed error maps (all in the reference frame, same size)."""
    if len(maps) < 2:
        raise ConfigError("a per-position model of good boards needs at least 2 boards")
    if not 0.5 <= quantile <= 1.0 or dilate_px < 0:
        raise ConfigError(f"atlas quantile must be in [0.5, 1] and dilation >= 0, got {quantile} / {dilate_px}")
    shapes = {m.shape for m in maps}
    if len(shapes) != 1:
        raise ConfigError(f"good boards' maps differ in size ({sorted(shapes)}); register them first")
    chosen = list(maps)[:: max(1, len(maps) // MAX_MAPS)][:MAX_MAPS]
    stack = np.stack([np.asarray(m, np.float32) for m in chosen])
    level = np.quantile(stack, quantile, axis=0).astype(np.float32) if quantile < 1.0 else stack.max(axis=0)
    if dilate_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1))
        level = cv2.dilate(level, kernel)
    floor = max(float(np.quantile(level, floor_quantile)), 1e-12)
    return Atlas(level=level, floor=floor, quantile=quantile, dilate_px=dilate_px, boards=len(chosen),
                 strength=strength)
