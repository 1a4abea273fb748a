"""The picture of a learned tolerance version: where it is wider, over the reference board.

QA reads it before and after teaching: the reference board, tinted where the tolerance is wider
(the more, the redder), each lesson's region outlined with the board it came from, and the places of
confirmed defects (never widened) outlined in green. Stored as PNG bytes with the version.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inspector.core.results import boxes_meet
from inspector.review.lessons import Lesson

TINT_COLOUR_MAP = cv2.COLORMAP_AUTUMN  # yellow (a little wider) -> red (at the ceiling)
LESSON_COLOUR = (255, 0, 255)  # magenta, as the overlays' region boxes
PROTECTED_COLOUR = (0, 200, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_WIDTH = 640  # small boards are enlarged so the labels stay readable


def _places(lessons: Sequence[Lesson], pad: int) -> list[tuple[tuple[int, int, int, int], list[int], float]]:
    """Lessons at one place (boxes within `pad` of each other) drawn as one box and one label: the
    same glint dismissed on ten boards is one place taught ten times, not ten labels on top of each other."""
    places: list[tuple[list[int], list[int], float]] = []  # box, boards, widest tolerance
    for lesson in lessons:
        box = [lesson.box[0] - pad, lesson.box[1] - pad, lesson.box[2] + pad, lesson.box[3] + pad]
        for place in places:
            other = place[0]
            if boxes_meet(box, other):
                other[:] = [min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]), max(box[3], other[3])]
                if lesson.inspection_id not in place[1]:
                    place[1].append(lesson.inspection_id)
                places[places.index(place)] = (other, place[1], max(place[2], lesson.factor))
                break
        else:
            places.append((box, [lesson.inspection_id], lesson.factor))
    return [((b[0] + pad, b[1] + pad, b[2] - pad, b[3] - pad), boards, widest) for b, boards, widest in places]


def tolerance_figure(reference: np.ndarray, factor: np.ndarray, protected: np.ndarray,
                     lessons: Sequence[Lesson], ceiling: float | None = None) -> bytes:
    """PNG bytes of the reference board with the widened tolerance, the lessons and the protected places."""
    board = reference if reference.ndim == 3 else cv2.cvtColor(reference, cv2.COLOR_GRAY2BGR)
    scale = max(1.0, MIN_WIDTH / board.shape[1])
    height, width = round(board.shape[0] * scale), round(board.shape[1] * scale)
    canvas = cv2.resize(board, (width, height), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.addWeighted(canvas, 0.6, np.full_like(canvas, 255), 0.4, 0)  # paler, so the tint reads
    wide = cv2.resize(factor.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    top = float(ceiling if ceiling is not None else max(float(factor.max()), 1.0 + 1e-6))
    if float(factor.max()) > 1.0:
        level = np.clip((wide - 1.0) / max(top - 1.0, 1e-6), 0.0, 1.0)
        tint = cv2.applyColorMap((255 - level * 255).astype(np.uint8), TINT_COLOUR_MAP)
        alpha = np.where(wide > 1.0, 0.35 + 0.5 * level, 0.0).astype(np.float32)[..., None]
        canvas = (canvas * (1 - alpha) + tint * alpha).astype(np.uint8)
    sy, sx = height / factor.shape[0], width / factor.shape[1]
    guarded = cv2.resize(protected.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(guarded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, PROTECTED_COLOUR, 2)
    for box, boards, widest in _places(lessons, pad=max(2, round(4 / min(sx, sy)))):
        x1, y1, x2, y2 = box
        corner1, corner2 = (round(x1 * sx), round(y1 * sy)), (round(x2 * sx), round(y2 * sy))
        cv2.rectangle(canvas, corner1, corner2, LESSON_COLOUR, 2)
        shown = ", ".join(f"#{n}" for n in boards[:3]) + (f" +{len(boards) - 3}" if len(boards) > 3 else "")
        label = f"{shown} {widest:.1f}x"
        origin = (min(corner1[0], width - 8 * len(label)), max(12, corner1[1] - 4))
        cv2.putText(canvas, label, origin, FONT, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(canvas, label, origin, FONT, 0.45, LESSON_COLOUR, 1, cv2.LINE_AA)
    lines = (f"tolerance wider on {float((factor > 1).mean()):.1%} of the board (at most {float(factor.max()):.1f}x), "
             f"{len(lessons)} lessons",
             "magenta: a taught place, the boards it was taught from, its widest tolerance",
             "green: places of confirmed defects, never widened")
    legend = np.full((8 + 19 * len(lines), width, 3), 255, np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(legend, text, (6, 17 + 19 * row), FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".png", np.vstack([canvas, legend]))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise ValueError("the tolerance figure could not be encoded")
    return encoded.tobytes()
