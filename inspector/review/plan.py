"""The next learned tolerance version, planned from the reviews since the current one (nothing written).

`plan` runs the first three steps of teaching (inspector/review/teach.py): the dismissed regions
become lessons (`_learn`), the places of confirmed defects are protected (`_protect`), and the new
version is previewed on stored boards (inspector/review/preview.py). `TeachingPlan` holds the result
for `learn` to refuse or store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.config import TeachConfig
from inspector.core.engine import Inspector
from inspector.core.interface import Analysis
from inspector.core.tolerance import LearnedTolerance, mask_from_bytes
from inspector.errors import ConfigError, InspectorError
from inspector.review.boards import Boards, box_of, line_map, regions_of
from inspector.review.figure import tolerance_figure
from inspector.review.lessons import Lesson, Preview, Refusal
from inspector.review.preview import preview, tolerance_of
from inspector.store import InspectionRecord, ReviewRecord, Store

NOT_REGISTERED = ("boards of this bundle are not registered to a reference (bare-board scans of any design): a "
                  "place on one board is not the same place on the next, so a dismissed region cannot be tolerated "
                  "by position. Teaching applies to bundles of one fixtured design; for these boards move the lines "
                  "on good boards instead (inspector calibrate)")

Reviewed = tuple[ReviewRecord, InspectionRecord]


class TeachingRefused(InspectorError):
    """A version that would miss a confirmed defect, or that has nothing to teach: nothing was written."""


@dataclass
class TeachingPlan:
    """A version before it is written: the maps, what shaped them, and the preview."""

    factor: np.ndarray
    protected: np.ndarray
    lessons: list[Lesson]
    refusals: list[Refusal]
    preview: Preview
    through_review_id: int
    figure: bytes
    protected_notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        widened = self.factor > 1.0
        return {"lessons": [asdict(lesson) for lesson in self.lessons],
                "refusals": [asdict(refusal) for refusal in self.refusals],
                "preview": asdict(self.preview), "preview_text": self.preview.describe(),
                "widened_share": float(widened.mean()), "max_factor": float(self.factor.max()),
                "protected_share": float(self.protected.mean()), "protected_notes": self.protected_notes}

    def describe(self) -> str:
        lines = [f"{len(self.lessons)} lessons from dismissed regions, {len(self.refusals)} refused; tolerance "
                 f"widened on {float((self.factor > 1).mean()):.2%} of the board (at most {float(self.factor.max()):.2f}x)"]
        lines += [f"  lesson: board #{lesson.inspection_id} {lesson.board}: region at {list(lesson.box)} showed "
                  f"{lesson.showed:.2f}x the line -> tolerance {lesson.factor:.2f}x"
                  + (" (capped: still flagged)" if lesson.capped else "")
                  + (" (kept off a confirmed defect's place)" if lesson.clipped_by_protection else "")
                  for lesson in self.lessons]
        lines += [f"  refused: board #{r.inspection_id} {r.board}: {r.reason}" for r in self.refusals]
        lines += [f"  protected: {note}" for note in self.protected_notes]
        lines.append("  preview: " + self.preview.describe())
        return "\n".join(lines)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _split_reviews(reviews: Iterable[Reviewed], after: int) -> tuple[list[Reviewed], list[Reviewed]]:
    """(new dismissals, new confirmations): boards whose latest review came after review id `after`."""
    dismissed = [(r, i) for r, i in reviews if r.id > after and r.decision == "dismiss" and i.verdict != "error"]
    confirmed = [(r, i) for r, i in reviews if r.id > after and r.decision == "confirm" and i.verdict != "error"]
    return dismissed, confirmed


def _protect(engine: Inspector, boards: Boards, confirmed: Sequence[Reviewed], protected: np.ndarray,
             config: TeachConfig) -> list[str]:
    """Add the places of confirmed defects to `protected` (in place); notes for the ones from stored boxes."""
    notes: list[str] = []
    grow = _disc(2 * config.spread_px + 1)
    for review, record in confirmed:
        analysis = boards.get(record.id)
        if isinstance(analysis, Analysis):
            units = line_map(engine, analysis)
            # Every region at the line, however small: a confirmed defect is protected where it showed at all.
            for mask in regions_of(units, engine.scoring.grow_fraction, 1):
                protected |= cv2.dilate(mask.astype(np.uint8), grow) > 0
            continue
        _protect_stored_boxes(record, protected, config)
        notes.append(f"board #{record.id} ({record.source_name}, confirmed {review.defect_type}): {analysis}; "
                     f"its stored boxes are protected instead")
    return notes


def _protect_stored_boxes(record: InspectionRecord, protected: np.ndarray, config: TeachConfig) -> None:
    """A confirmed board whose image is gone: its stored boxes (the board as photographed, close to the
    reference frame on a fixture) are protected at working resolution instead, with the spread as margin."""
    height, width = protected.shape
    boxes = [region.get("bbox") for region in record.regions]
    shape_y, shape_x = _input_shape_of(record, protected.shape)
    for box in boxes:
        if not box or len(box) != 4:
            continue
        x1, y1, x2, y2 = (int(v) for v in box)
        sx, sy = width / shape_x, height / shape_y
        pad = 2 * config.spread_px + 1
        protected[max(0, int(y1 * sy) - pad):min(height, int(y2 * sy) + pad + 1),
                  max(0, int(x1 * sx) - pad):min(width, int(x2 * sx) + pad + 1)] = True


def _input_shape_of(record: InspectionRecord, working: tuple[int, ...]) -> tuple[int, int]:
    """The input size of a board whose image is gone: its heatmap's, else the working size."""
    for path in (record.heatmap_path, record.overlay_path):
        if path and Path(path).is_file():
            picture = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if picture is not None:
                return int(picture.shape[0]), int(picture.shape[1])
    return int(working[0]), int(working[1])


def _learn(engine: Inspector, boards: Boards, dismissed: Sequence[Reviewed], factor: np.ndarray,
           inspected: np.ndarray, config: TeachConfig) -> tuple[list[Lesson], list[Refusal]]:
    """Widen `factor` (in place) at the dismissed regions; the lessons and the refusals."""
    lessons: list[Lesson] = []
    refusals: list[Refusal] = []
    spread = _disc(config.spread_px) if config.spread_px > 0 else None
    inspected_pixels = max(1, int(inspected.sum()))
    for review, record in dismissed:
        analysis = boards.get(record.id)
        if not isinstance(analysis, Analysis):
            refusals.append(Refusal(record.id, review.id, record.source_name, f"not learned: {analysis}"))
            continue
        units = line_map(engine, analysis)
        # Everything the board shows above the region line, however small: an operator called all of it good
        # (the runner's minimum area hides specks that the next board may show a little larger).
        masks = regions_of(units, engine.scoring.grow_fraction, 1)
        if not masks:
            refusals.append(Refusal(record.id, review.id, record.source_name,
                                    "shows nothing above the region line now (flagged by its score alone, or the "
                                    "lines or the bundle changed since): nothing local to learn"))
            continue
        largest = max(masks, key=lambda m: int((m & inspected).sum()))
        share = float((largest & inspected).sum()) / inspected_pixels
        if share > config.max_region_share:  # the whole board is refused: its set-up was off, not one place
            refusals.append(Refusal(record.id, review.id, record.source_name,
                                    f"its region at {list(box_of(largest))} covers {share:.1%} of the inspected board "
                                    f"(more than {config.max_region_share:.0%}): that is a set-up problem "
                                    "(light, focus, fixture, a different product), not a place to tolerate; "
                                    "nothing on this board is learned: fix the set-up or retrain"))
            continue
        for mask in masks:
            need = np.where(mask, units * np.float32(1.0 + config.margin), np.float32(0.0)).astype(np.float32)
            if spread is not None:
                need = cv2.dilate(need, spread)
            showed = float(units[mask].max())
            np.maximum(factor, np.minimum(need, np.float32(config.ceiling)), out=factor)
            lessons.append(Lesson(record.id, review.id, record.source_name, box_of(mask), showed,
                                  min(showed * (1.0 + config.margin), config.ceiling),
                                  showed * (1.0 + config.margin) > config.ceiling, False))
    return lessons, refusals


def _inspected_area(engine: Inspector, shape: tuple[int, int]) -> np.ndarray:
    if engine.roi is None:
        return np.ones(shape, bool)
    return cv2.resize(engine.roi, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 127


def plan(engine: Inspector, store: Store, config: TeachConfig) -> TeachingPlan:
    """The next version from the dismissals since the current one (nothing is written)."""
    if engine.registration is None:
        raise ConfigError(f"{engine.source}: {NOT_REGISTERED}")
    model = engine.model_hash
    apply_qa_threshold(engine, store)
    current = store.current_tolerance(model, with_maps=True)
    shape = engine.working_shape
    factor = (LearnedTolerance.from_bytes(current.factor, current.version).factor.copy()
              if current is not None and current.factor is not None else np.ones(shape, np.float32))
    protected = (mask_from_bytes(current.protected) if current is not None and current.protected is not None
                 else np.zeros(shape, bool))
    if factor.shape != shape or protected.shape != shape:
        raise ConfigError(f"{engine.source}: the stored learned tolerance is {factor.shape[1]}x{factor.shape[0]}, this "
                          f"bundle's maps {shape[1]}x{shape[0]}: roll it back to version 0 before teaching again")
    after = current.through_review_id if current is not None else 0
    reviews = store.latest_reviews(model)
    dismissed, confirmed = _split_reviews(reviews, after)
    if not dismissed and not confirmed:
        raise TeachingRefused(f"nothing to teach: no board of model {model[:12]} was dismissed or confirmed since "
                              f"learned tolerance version {current.version if current else 0}")
    recent = store.recent_inspections_of(model, config.preview_boards)
    boards = Boards(engine)
    boards.analyse([record for _, record in dismissed + confirmed], "judging reviewed boards")
    notes = _protect(engine, boards, confirmed, protected, config)
    lessons, refusals = _learn(engine, boards, dismissed, factor, _inspected_area(engine, shape), config)
    clipped = protected & (factor > 1.0)
    factor[protected] = 1.0
    if clipped.any():
        lessons = [_clipped(lesson, clipped) for lesson in lessons]
    boards.analyse(recent, "previewing on stored boards")
    decisions = {record.id: review for review, record in reviews}
    before = tolerance_of(current)
    new = LearnedTolerance(factor, (current.version if current else 0) + 1) if (factor > 1.0).any() else None
    shown = preview(engine, boards, recent, decisions, before, new)
    figure = tolerance_figure(engine.registration.reference, factor, protected, lessons)
    return TeachingPlan(factor, protected, lessons, refusals, shown, max(r.id for r, _ in reviews), figure, notes)


def _clipped(lesson: Lesson, clipped: np.ndarray) -> Lesson:
    x1, y1, x2, y2 = lesson.box
    if not clipped[y1:y2, x1:x2].any():
        return lesson
    return Lesson(lesson.inspection_id, lesson.review_id, lesson.board, lesson.box, lesson.showed, lesson.factor,
                  lesson.capped, True)


def apply_qa_threshold(engine: Inspector, store: Store) -> None:
    """Judge as the line does: QA's current fail line, when QA set one."""
    current = store.current_threshold(engine.model_hash)
    if current is not None:
        engine.set_image_threshold(current.image_threshold, current.version)
