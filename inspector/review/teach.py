"""Teaching the station from review: dismissed false alarms widen the per-position tolerance.

`inspector learn` (and the QA page's Teach button) turns the regions operators dismissed since the
last version into a new, numbered version of the model's learned tolerance
(inspector/core/tolerance.py), in four steps:

1. **lessons**: each dismissed board is judged again by the bundle (no learned tolerance); each
   region it shows at the region line becomes a lesson: at its pixels, and `spread_px` around them,
   the tolerance becomes what the region showed over the line x (1 + margin), never past `ceiling`.
   A region larger than `max_region_share` of the inspected board is refused (a set-up problem).
2. **protection**: every place where a defect was ever confirmed (the regions of confirmed boards,
   judged the same way, grown by twice the spread) keeps the bundle's own tolerance: a dismissal
   never widens it, and a later confirmation resets a place an earlier lesson widened.
3. **preview**: the new version is tried against the one in force on the last `preview_boards`
   stored boards: regions removed (on dismissed, unreviewed and passed boards) and confirmed defects
   that would have been missed. Any miss refuses the version; nothing is written.
4. **version**: stored with its author, reason, lessons, refusals, preview and a figure over the
   reference board; the runner applies it from its next board on.

Only fixtured designs are taught: their maps are in the reference board's frame, so a place is the
same place on every board. Bare-board scans of any design have no such frame (see NOT_REGISTERED).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from inspector.config import InspectConfig, TeachConfig
from inspector.core.engine import Inspector
from inspector.core.imageio import ImageLoadError, load_image
from inspector.core.interface import Analysis
from inspector.core.registration import RegistrationError
from inspector.core.tolerance import LearnedTolerance, mask_from_bytes, mask_to_bytes
from inspector.errors import ConfigError, InspectorError
from inspector.review.figure import tolerance_figure
from inspector.review.lessons import Lesson, Preview, Refusal
from inspector.review.roles import ROLE_QA, User, require_role
from inspector.store import InspectionRecord, ReviewRecord, Store, ToleranceRecord

log = logging.getLogger(__name__)

NOT_REGISTERED = ("boards of this bundle are not registered to a reference (bare-board scans of any design): a "
                  "place on one board is not the same place on the next, so a dismissed region cannot be tolerated "
                  "by position. Teaching applies to bundles of one fixtured design; for these boards move the lines "
                  "on good boards instead (inspector calibrate)")
ANALYSE_BATCH = 4


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


# ---------------------------------------------------------------------------------------------- maps
def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


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
    count, labels = cv2.connectedComponents((units >= grow_fraction).astype(np.uint8), connectivity=8)
    seeded = np.unique(labels[units >= 1.0])
    masks = [labels == label for label in seeded if label != 0]
    return [mask for mask in masks if int(mask.sum()) >= min_area]


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# ---------------------------------------------------------------------------------------------- boards
class Boards:
    """Stored boards judged again by the bundle, each once (lessons, protection and preview share them)."""

    def __init__(self, engine: Inspector) -> None:
        self.engine = engine
        self._analyses: dict[int, Analysis | str] = {}

    def analyse(self, records: Sequence[InspectionRecord], desc: str) -> None:
        todo = [r for r in records if r.id not in self._analyses]
        with tqdm(total=len(todo), desc=desc, unit="board", leave=False) as progress:
            for start in range(0, len(todo), ANALYSE_BATCH):
                chunk = todo[start:start + ANALYSE_BATCH]
                images: list[tuple[InspectionRecord, np.ndarray]] = []
                for record in chunk:
                    try:
                        images.append((record, load_image(record.image_path)))
                    except ImageLoadError as exc:
                        self._analyses[record.id] = f"its stored image is gone or unreadable ({exc.reason})"
                    except (OSError, ValueError) as exc:
                        self._analyses[record.id] = f"its stored image cannot be read ({exc})"
                for record, image in images:  # one at a time: a board that cannot be aligned is its own
                    try:
                        self._analyses[record.id] = self.engine.analyse([image])[0]
                    except RegistrationError as exc:
                        self._analyses[record.id] = f"it cannot be aligned to the reference ({exc})"
                    except InspectorError as exc:
                        self._analyses[record.id] = f"it cannot be judged ({exc})"
                progress.update(len(chunk))

    def get(self, inspection_id: int) -> Analysis | str:
        """The board's analysis, or why there is none."""
        return self._analyses.get(inspection_id, "not analysed")


# ---------------------------------------------------------------------------------------------- plan
def _split_reviews(reviews: Iterable[tuple[ReviewRecord, InspectionRecord]], after: int
                   ) -> tuple[list[tuple[ReviewRecord, InspectionRecord]], list[tuple[ReviewRecord, InspectionRecord]]]:
    """(new dismissals, new confirmations): boards whose latest review came after review id `after`."""
    dismissed = [(r, i) for r, i in reviews if r.id > after and r.decision == "dismiss" and i.verdict != "error"]
    confirmed = [(r, i) for r, i in reviews if r.id > after and r.decision == "confirm" and i.verdict != "error"]
    return dismissed, confirmed


def _protect(engine: Inspector, boards: Boards, confirmed: Sequence[tuple[ReviewRecord, InspectionRecord]],
             protected: np.ndarray, config: TeachConfig) -> list[str]:
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
        # The image is gone: its stored boxes (the board as photographed, close to the reference frame on a
        # fixture) are protected at working resolution instead, with the spread as margin.
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
        notes.append(f"board #{record.id} ({record.source_name}, confirmed {review.defect_type}): {analysis}; "
                     f"its stored boxes are protected instead")
    return notes


def _input_shape_of(record: InspectionRecord, working: tuple[int, ...]) -> tuple[int, int]:
    """The input size of a board whose image is gone: its heatmap's, else the working size."""
    for path in (record.heatmap_path, record.overlay_path):
        if path and Path(path).is_file():
            picture = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if picture is not None:
                return int(picture.shape[0]), int(picture.shape[1])
    return int(working[0]), int(working[1])


def _learn(engine: Inspector, boards: Boards, dismissed: Sequence[tuple[ReviewRecord, InspectionRecord]],
           factor: np.ndarray, inspected: np.ndarray, config: TeachConfig) -> tuple[list[Lesson], list[Refusal]]:
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
                                    f"its region at {list(_box(largest))} covers {share:.1%} of the inspected board "
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
            lessons.append(Lesson(record.id, review.id, record.source_name, _box(mask), showed,
                                  min(showed * (1.0 + config.margin), config.ceiling),
                                  showed * (1.0 + config.margin) > config.ceiling, False))
    return lessons, refusals


def _inspected_area(engine: Inspector, shape: tuple[int, int]) -> np.ndarray:
    if engine.roi is None:
        return np.ones(shape, bool)
    return cv2.resize(engine.roi, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 127


def _tolerance_of(record: ToleranceRecord | None) -> LearnedTolerance | None:
    return None if record is None else LearnedTolerance.stored(record.factor, record.version)


def preview(engine: Inspector, boards: Boards, records: Sequence[InspectionRecord],
            decisions: dict[int, ReviewRecord], before: LearnedTolerance | None,
            after: LearnedTolerance | None) -> Preview:
    """Each stored board judged with the version in force (`before`) and the new one (`after`)."""
    outcome = Preview()
    kept = engine.tolerance
    try:
        for record in records:
            analysis = boards.get(record.id)
            if not isinstance(analysis, Analysis):
                outcome.skipped += 1
                continue
            engine.set_tolerance(before)
            old = engine.judge([analysis])[0]
            engine.set_tolerance(after)
            new = engine.judge([analysis])[0]
            outcome.boards += 1
            outcome.regions_before += len(old.regions)
            outcome.regions_after += len(new.regions)
            lost = max(0, len(old.regions) - len(new.regions))
            outcome.added += max(0, len(new.regions) - len(old.regions))
            if old.verdict != new.verdict:
                key = f"{old.verdict}->{new.verdict}"
                outcome.verdicts_changed[key] = outcome.verdicts_changed.get(key, 0) + 1
            decision = decisions.get(record.id)
            if decision is not None and decision.decision == "confirm":
                if lost or (old.verdict != "pass" and new.verdict == "pass"):
                    outcome.missed.append({"inspection_id": record.id, "board": record.source_name,
                                           "defect_type": decision.defect_type, "verdict": f"{old.verdict}->{new.verdict}",
                                           "regions": f"{len(old.regions)}->{len(new.regions)}"})
            elif decision is not None and decision.decision == "dismiss":
                outcome.removed_on_dismissed += lost
            else:
                outcome.removed_on_unreviewed += lost
    finally:
        engine.set_tolerance(kept)
    return outcome


def plan(engine: Inspector, store: Store, config: TeachConfig) -> TeachingPlan:
    """The next version from the dismissals since the current one (nothing is written)."""
    if engine.registration is None:
        raise ConfigError(f"{engine.source}: {NOT_REGISTERED}")
    model = engine.model_hash
    _apply_qa_threshold(engine, store)
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
    before = _tolerance_of(current)
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


def _apply_qa_threshold(engine: Inspector, store: Store) -> None:
    """Judge as the line does: QA's current fail line, when QA set one."""
    current = store.current_threshold(engine.model_hash)
    if current is not None:
        engine.set_image_threshold(current.image_threshold, current.version)


# ---------------------------------------------------------------------------------------------- commands
def _engine(bundle: str | Path, store: Store, config: InspectConfig | None) -> Inspector:
    engine = Inspector.load(bundle, config or InspectConfig())
    if engine.registration is None:
        raise ConfigError(f"{bundle}: {NOT_REGISTERED}")
    store.register_model(engine.model_hash, str(Path(bundle).resolve()))
    return engine


def learn(bundle: str | Path, store: Store, user: User | None, reason: str, config: TeachConfig | None = None, *,
          dry_run: bool = False, inspect_config: InspectConfig | None = None) -> tuple[TeachingPlan, ToleranceRecord | None]:
    """QA teaches the station: the next learned tolerance version from the dismissals since the last one,
    previewed on stored boards and stored (unless `dry_run`). Refused (TeachingRefused, nothing written)
    when it would miss a confirmed defect or has nothing to teach."""
    author = require_role(user, ROLE_QA, "teach the station")
    if not reason.strip():
        raise ConfigError("teaching needs a reason (it is kept in the audit trail)")
    config = config or TeachConfig()
    engine = _engine(bundle, store, inspect_config)
    made = plan(engine, store, config)
    if made.preview.missed:
        boards = ", ".join(f"#{m['inspection_id']} {m['board']} ({m['defect_type']})" for m in made.preview.missed)
        raise TeachingRefused(f"refused: this version would have missed confirmed defects on {boards}; nothing was "
                              f"changed\n{made.describe()}")
    if dry_run:
        return made, None
    record = store.add_tolerance_version(
        engine.model_hash, author=author.name, reason=reason.strip(), through_review_id=made.through_review_id,
        factor=LearnedTolerance(made.factor, 1).to_bytes() if (made.factor > 1.0).any() else None,
        protected=mask_to_bytes(made.protected), figure=made.figure, summary=made.summary())
    log.info("learned tolerance version %d by %s: %s", record.version, author.name, reason)
    return made, record


def rollback(bundle: str | Path, store: Store, user: User | None, version: int, reason: str,
             config: TeachConfig | None = None, inspect_config: InspectConfig | None = None
             ) -> tuple[Preview, ToleranceRecord]:
    """Bring an earlier version's tolerance back as a new version (0: the bundle's own, nothing learned).
    History is never rewritten; places protected since stay protected in the record, and the preview
    refuses a rollback that would miss a confirmed defect."""
    author = require_role(user, ROLE_QA, "roll back the learned tolerance")
    if not reason.strip():
        raise ConfigError("a rollback needs a reason (it is kept in the audit trail)")
    config = config or TeachConfig()
    engine = _engine(bundle, store, inspect_config)
    _apply_qa_threshold(engine, store)
    current = store.current_tolerance(engine.model_hash, with_maps=True)
    if current is None:
        raise TeachingRefused(f"model {engine.model_hash[:12]} has no learned tolerance to roll back")
    target = store.tolerance_version(engine.model_hash, version) if version > 0 else None
    before, after = _tolerance_of(current), _tolerance_of(target)
    if after is not None:
        engine.set_tolerance(after)  # checks it fits this bundle
        engine.set_tolerance(None)
    recent = store.recent_inspections_of(engine.model_hash, config.preview_boards)
    boards = Boards(engine)
    boards.analyse(recent, "previewing on stored boards")
    decisions = {review.inspection_id: review for review, _ in store.latest_reviews(engine.model_hash)}
    shown = preview(engine, boards, recent, decisions, before, after)
    if shown.missed:
        raise TeachingRefused(f"refused: rolling back to version {version} would have missed confirmed defects "
                              f"({shown.describe()}); nothing was changed")
    summary = {"lessons": [], "refusals": [], "preview": asdict(shown), "preview_text": shown.describe(),
               "rollback_to": version}
    record = store.add_tolerance_version(
        engine.model_hash, author=author.name, reason=f"roll back to version {version}: {reason.strip()}",
        through_review_id=current.through_review_id, factor=target.factor if target is not None else None,
        protected=current.protected, figure=target.figure if target is not None else None, summary=summary,
        restored_from=version)
    return shown, record
