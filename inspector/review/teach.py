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

Steps 1-3 are `plan` (inspector/review/plan.py), on boards judged again once (boards.py) and
previewed (preview.py); this module holds the commands: `learn` (step 4) and `rollback`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from inspector.config import InspectConfig, TeachConfig
from inspector.core.engine import Inspector
from inspector.core.tolerance import LearnedTolerance, mask_to_bytes
from inspector.errors import ConfigError
from inspector.review.boards import Boards
from inspector.review.lessons import Preview
from inspector.review.plan import NOT_REGISTERED, TeachingPlan, TeachingRefused, apply_qa_threshold, plan
from inspector.review.preview import preview, tolerance_of
from inspector.review.roles import ROLE_QA, User, require_role
from inspector.store import Store, ToleranceRecord

log = logging.getLogger(__name__)


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
    apply_qa_threshold(engine, store)
    current = store.current_tolerance(engine.model_hash, with_maps=True)
    if current is None:
        raise TeachingRefused(f"model {engine.model_hash[:12]} has no learned tolerance to roll back")
    target = store.tolerance_version(engine.model_hash, version) if version > 0 else None
    before, after = tolerance_of(current), tolerance_of(target)
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
