"""A learned per-position tolerance: what QA taught the station from dismissed false alarms.

On a fixtured design every board's map is in the reference board's frame, so a place means the same
place on every board. Where operators dismissed regions, `inspector learn` (inspector/review/teach.py)
widens the tolerance: the judged map is divided there by a factor >= 1 before the lines are applied,

    tolerated = judged map / factor      (factor 1 everywhere else)

so the same glint no longer reaches the region line while a defect anywhere else, and a place where
a defect was confirmed, is judged exactly as before. The factor is bounded by what the dismissed
regions showed plus a stated margin and by a ceiling (inspector.config.TeachConfig); every version
lives in the results store with its author, reason and lessons, and the engine applies the newest
from its next board on. Torch-free.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspector.errors import InspectorError


@dataclass(frozen=True)
class LearnedTolerance:
    """One version of the tolerance: a float32 HxW factor map (working resolution, reference frame)."""

    factor: np.ndarray
    version: int
    _inverse: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        factor = np.ascontiguousarray(self.factor, dtype=np.float32)
        if factor.ndim != 2 or not np.all(np.isfinite(factor)) or float(factor.min()) < 1.0:
            raise InspectorError(f"learned tolerance version {self.version}: the factor map must be a finite HxW "
                                 "map of values >= 1")
        object.__setattr__(self, "factor", factor)
        object.__setattr__(self, "_inverse", (1.0 / factor).astype(np.float32))

    @property
    def widened(self) -> np.ndarray:
        """Where the tolerance is wider than the bundle's (bool HxW)."""
        return self.factor > 1.0

    def apply(self, judged: np.ndarray) -> np.ndarray:
        """A board's judged map (working resolution, reference frame) with the tolerance divided out."""
        inverse = self._inverse
        if judged.shape != inverse.shape:
            raise InspectorError(f"learned tolerance version {self.version} is {inverse.shape[1]}x{inverse.shape[0]}, "
                                 f"the board's map {judged.shape[1]}x{judged.shape[0]}: it was taught on another "
                                 "bundle; roll it back or teach again")
        return cv2.multiply(judged, inverse)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, factor=self.factor)
        return buffer.getvalue()

    @classmethod
    def stored(cls, data: bytes | None, version: int) -> LearnedTolerance | None:
        """A version as the store keeps it (no map: nothing widened, e.g. a rollback to version 0)."""
        return None if data is None else cls.from_bytes(data, version)

    @classmethod
    def from_bytes(cls, data: bytes, version: int) -> LearnedTolerance:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return cls(factor=arrays["factor"], version=version)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise InspectorError(f"learned tolerance version {version} is unreadable ({exc})") from exc


def mask_to_bytes(mask: np.ndarray) -> bytes:
    """A bool HxW map (the places tolerance may never widen) for the store."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, mask=np.packbits(mask.astype(bool), axis=None), shape=np.array(mask.shape))
    return buffer.getvalue()


def mask_from_bytes(data: bytes) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            shape = tuple(int(v) for v in arrays["shape"])
            return np.unpackbits(arrays["mask"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise InspectorError(f"stored map of protected places is unreadable ({exc})") from exc
