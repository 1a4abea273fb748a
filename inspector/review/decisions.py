"""Operators' decisions on flagged boards, each behind its role check: the dashboard's buttons and
`inspector review` call these same functions, so a script writes exactly the records a person does."""

from __future__ import annotations

from inspector.errors import InspectorError
from inspector.review.roles import ROLE_OPERATOR, ROLE_QA, User, require_role
from inspector.store import Store

# What operators pick when confirming. Assembly defects use the names of the sample-board
# generator (inspector/synth/defects.py) and bare-board ones DeepPCB's six classes, so reviewed
# history can be compared with labelled test sets.
DEFECT_TYPES = (
    "missing_component", "shifted_component", "solder_bridge", "broken_trace", "scratch", "contamination",
    "burn", "open", "short", "mousebite", "spur", "spurious_copper", "pin_hole", "other",
)


class ReviewRejected(InspectorError):
    """A review or threshold change was refused for its content (empty reason, unknown type...)."""


def confirm_defect(store: Store, user: User | None, inspection_id: int, defect_type: str, comment: str = "") -> int:
    """Store a confirmed defect as a review by `user`; returns the review id."""
    reviewer = require_role(user, ROLE_OPERATOR, "confirm defect")
    if defect_type not in DEFECT_TYPES:
        raise ReviewRejected(f"board {inspection_id}: unknown defect type {defect_type!r} "
                             f"(one of {', '.join(DEFECT_TYPES)})")
    return store.add_review(inspection_id, operator=reviewer.name, decision="confirm",
                            defect_type=defect_type, comment=comment.strip())


def dismiss_false_alarm(store: Store, user: User | None, inspection_id: int, comment: str = "") -> int:
    """Store a false alarm as a review by `user`; returns the review id."""
    reviewer = require_role(user, ROLE_OPERATOR, "dismiss false alarm")
    return store.add_review(inspection_id, operator=reviewer.name, decision="dismiss",
                            defect_type="", comment=comment.strip())


def dismiss_many(store: Store, user: User | None, inspection_ids: list[int], comment: str = "") -> list[int]:
    """QA only: dismiss several boards at once as false alarms; returns the review ids."""
    reviewer = require_role(user, ROLE_QA, "dismiss several boards")
    return [store.add_review(inspection_id, operator=reviewer.name, decision="dismiss", defect_type="",
                             comment=comment.strip()) for inspection_id in inspection_ids]
