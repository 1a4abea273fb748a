"""The preview: a learned tolerance version tried on stored boards before it is stored.

Each board is judged with the version in force and with the new one (a lesson, or a rollback) from
the same analysis, so the preview costs no model run beyond `Boards`. A confirmed defect the new
version would miss is listed in `Preview.missed`, and the caller refuses the version.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspector.core.engine import Inspector
from inspector.core.interface import Analysis
from inspector.core.tolerance import LearnedTolerance
from inspector.review.boards import Boards
from inspector.review.lessons import Preview
from inspector.store import InspectionRecord, ReviewRecord, ToleranceRecord


def tolerance_of(record: ToleranceRecord | None) -> LearnedTolerance | None:
    """A stored version's tolerance (None: the bundle's own)."""
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
