"""Light normalisation against a reference board (no torch).

Per channel, the aligned board is fitted as reference x (smooth quadratic gain field) + offset on a
coarse grid, robustly (the worst-fitting tenth of the cells, where a defect would sit, is dropped
and the fit repeated), and that field is divided out. This takes out exposure, white balance,
lighting gradients and vignetting, and cannot follow a local defect. `Registration.normalise_light`
(inspector/core/registration.py) runs it on the line.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

LIGHT_GRID = 20  # cells per side of the grid the lighting field is fitted on: coarse enough not to follow a defect

_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 buffer of `shape` kept per thread for intermediates that never leave a call: a fresh
    one per board costs page faults on the line's hot path (docs/results.md, "Registration
    constants"); one per thread stays safe when several feeds share a Registration."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.shape != shape:
        buffer = _SCRATCH.buffer = np.empty(shape, np.float32)
    return buffer


def _light_basis(height: int, width: int) -> np.ndarray:
    """(cells, 6) quadratic basis 1, x, y, x^2, xy, y^2 on the coarse lighting grid, x and y in [-1, 1]."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32),
                         indexing="ij")
    x, y = xs.ravel(), ys.ravel()
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


class LightField:
    """The reference's lighting grid, and the division of a board's smooth gain field and offset by it."""

    def __init__(self, reference: np.ndarray) -> None:
        self.height, self.width = reference.shape[:2]
        # The lighting grid: reference per channel, averaged into LIGHT_GRID x LIGHT_GRID cells.
        self._grid = (min(LIGHT_GRID, self.height), min(LIGHT_GRID, self.width))
        self._ref_cells = self._cells(reference)
        self._basis = _light_basis(*self._grid)

    def _cells(self, image: np.ndarray) -> np.ndarray:
        cells = cv2.resize(image, (self._grid[1], self._grid[0]), interpolation=cv2.INTER_AREA).astype(np.float32)
        return cells.reshape(-1, 1) if cells.ndim == 2 else cells.reshape(-1, 3)

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """Divide out a smooth per-channel gain field and offset fitted against the reference."""
        cells = self._cells(image)
        gains = np.empty((self._basis.shape[1] + 1, cells.shape[1]), np.float32)
        for c in range(cells.shape[1]):
            design = np.concatenate([self._basis * self._ref_cells[:, c:c + 1], np.ones((len(cells), 1), np.float32)], 1)
            keep = np.ones(len(cells), bool)
            for _ in range(2):  # refit without the worst-fitting tenth of the cells (a defect, a glare)
                coef, *_ = np.linalg.lstsq(design[keep], cells[keep, c], rcond=None)
                residual = np.abs(design @ coef - cells[:, c])
                keep = residual <= np.partition(residual, int(0.9 * (len(residual) - 1)))[int(0.9 * (len(residual) - 1))]
            gains[:, c] = coef
        field_small = (self._basis @ gains[:-1]).reshape(self._grid[0], self._grid[1], -1)
        field_small = np.clip(field_small, 0.2, 5.0)
        field_full = cv2.resize(field_small, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        # (image - offset) / field, rounded and saturated to uint8, in two OpenCV passes: far faster than
        # the numpy expression (docs/results.md, "Registration constants").
        offset = tuple(float(value) for value in gains[-1]) + (0.0,) * (4 - gains.shape[1])
        shifted = cv2.subtract(image, offset, dst=_scratch(image.shape), dtype=cv2.CV_32F)
        return cv2.divide(shifted, field_full, dtype=cv2.CV_8U)
