"""Stored boards judged again by the bundle, and what their maps show in the reference frame.

Lessons, protection and the preview (inspector/review/plan.py, preview.py) all read the same
reviewed and recent boards: `Boards` judges each once. A map is read in units of the region line
(`line_map`), so 1.0 is where a region starts whatever the bundle's scale, and `regions_of` finds
the regions the line would show on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from inspector.core.engine import Inspector
from inspector.core.imageio import ImageLoadError, load_image
from inspector.core.interface import Analysis
from inspector.core.registration import RegistrationError
from inspector.errors import InspectorError
from inspector.store import InspectionRecord


def line_map(engine: Inspector, analysis: Analysis) -> np.ndarray:
    """A board's judged map in the reference frame (working resolution), in units of the region line:
    1.0 is where a region starts, before any learned tolerance."""
    smoothed = analysis.smoothed if engine.edges is None else engine.edges.apply(analysis.smoothed)
    return (smoothed * np.float32(1.0 / (engine.pixel_scale * engine.pixel_threshold))).astype(np.float32)


def regions_of(units: np.ndarray, grow_fraction: float, min_area: int) -> list[np.ndarray]:
    """The regions a map in line units shows (bool masks): components above the grow line that reach
    the line, at least `min_area` pixels (the runner's minimum, at working resolution)."""
    if float(units.max()) < 1.0:
        return []
    _, labels = cv2.connectedComponents((units >= grow_fraction).astype(np.uint8), connectivity=8)
    seeded = np.unique(labels[units >= 1.0])
    masks = [labels == label for label in seeded if label != 0]
    return [mask for mask in masks if int(mask.sum()) >= min_area]


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box (x1, y1, x2, y2, end exclusive) of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class Boards:
    """Stored boards judged again by the bundle, each once (lessons, protection and preview share them)."""

    def __init__(self, engine: Inspector) -> None:
        self.engine = engine
        self._analyses: dict[int, Analysis | str] = {}

    def analyse(self, records: Sequence[InspectionRecord], desc: str) -> None:
        todo = [r for r in records if r.id not in self._analyses]
        for record in tqdm(todo, desc=desc, unit="board", leave=False):
            self._analyses[record.id] = self._analysis_of(record)

    def _analysis_of(self, record: InspectionRecord) -> Analysis | str:
        """One board at a time: a board that cannot be read or aligned is its own, with the reason."""
        try:
            image = load_image(record.image_path)
        except ImageLoadError as exc:
            return f"its stored image is gone or unreadable ({exc.reason})"
        except (OSError, ValueError) as exc:
            return f"its stored image cannot be read ({exc})"
        try:
            return self.engine.analyse([image])[0]
        except RegistrationError as exc:
            return f"it cannot be aligned to the reference ({exc})"
        except InspectorError as exc:
            return f"it cannot be judged ({exc})"

    def get(self, inspection_id: int) -> Analysis | str:
        """The board's analysis, or why there is none."""
        return self._analyses.get(inspection_id, "not analysed")
