"""Every write the dashboard makes, each behind its role check.

The check lives here, in the function that writes, not in the page that shows the button: a
hidden button is a convenience, this is the rule. Pages call only these functions to write.
"""

from __future__ import annotations

import math

from deploy.dashboard.auth import ROLE_OPERATOR, ROLE_QA, User, require_role
from inspector.errors import InspectorError
from inspector.store import Store, ThresholdRecord

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
        raise ReviewRejected(f"board {inspection_id}: unknown defect type {defect_type!r}")
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


def save_threshold(store: Store, user: User | None, model_hash: str, image_threshold: float, reason: str,
                   pixel_threshold: float | None = None) -> ThresholdRecord:
    """Append a threshold version for `model_hash`; QA only, with a reason, a finite value.

    `pixel_threshold` None keeps regions on the bundle's calibrated pixel threshold."""
    author = require_role(user, ROLE_QA, "change threshold")
    reason = reason.strip()
    if not reason:
        raise ReviewRejected("change threshold: a reason is required (it is kept in the audit trail)")
    if not math.isfinite(image_threshold):
        raise ReviewRejected(f"change threshold: threshold must be a finite number, got {image_threshold}")
    return store.add_threshold_version(model_hash, image_threshold=float(image_threshold),
                                       pixel_threshold=pixel_threshold, author=author.name, reason=reason)


def restore_threshold(store: Store, user: User | None, version: ThresholdRecord, reason: str) -> ThresholdRecord:
    """Restoring never rewrites history: the old value comes back as a new version."""
    require_role(user, ROLE_QA, "restore threshold")
    if not reason.strip():
        raise ReviewRejected(f"restore threshold version {version.version}: a reason is required")
    return save_threshold(store, user, version.model_hash, version.image_threshold,
                          f"restore version {version.version}: {reason.strip()}", version.pixel_threshold)
