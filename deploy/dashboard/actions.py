"""Every write the dashboard makes, each behind its role check.

The check lives here, in the function that writes, not in the page that shows the button: a
hidden button is a convenience, this is the rule. Pages call only these functions to write.
"""

from __future__ import annotations

import math
from pathlib import Path

from inspector.config import TeachConfig

# Reviews are the runtime's (`inspector review` writes the same records through the same checks).
from inspector.review.decisions import DEFECT_TYPES as DEFECT_TYPES
from inspector.review.decisions import ReviewRejected
from inspector.review.decisions import confirm_defect as confirm_defect
from inspector.review.decisions import dismiss_false_alarm as dismiss_false_alarm
from inspector.review.decisions import dismiss_many as dismiss_many
from inspector.review.lessons import Preview
from inspector.review.plan import TeachingPlan
from inspector.review.roles import ROLE_QA, User, require_role
from inspector.review.teach import learn, rollback
from inspector.store import Store, ThresholdRecord, ToleranceRecord


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


def teach_station(store: Store, user: User | None, bundle: Path, reason: str, config: TeachConfig | None = None, *,
                  dry_run: bool = False) -> tuple[TeachingPlan, ToleranceRecord | None]:
    """QA only: the next learned tolerance version from the dismissals since the last (a preview with
    `dry_run`); the same function as `inspector learn` (which checks the role first)."""
    return learn(bundle, store, user, reason, config, dry_run=dry_run)


def roll_back_tolerance(store: Store, user: User | None, bundle: Path, version: int, reason: str,
                        config: TeachConfig | None = None) -> tuple[Preview, ToleranceRecord]:
    """QA only (checked first by `rollback`): an earlier learned tolerance version back as a new version
    (never rewriting history)."""
    return rollback(bundle, store, user, version, reason, config)
