"""What a teaching run found: lessons, refusals, and the preview of a version on stored boards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Lesson:
    """One dismissed region taken as a lesson (boxes in the reference frame, working pixels)."""

    inspection_id: int
    review_id: int
    board: str
    box: tuple[int, int, int, int]
    showed: float  # the region's peak over the region line
    factor: float  # the widest tolerance it set
    capped: bool  # it showed more than the ceiling allows: still flagged where above it
    clipped_by_protection: bool  # part of it lies on a confirmed defect's place: kept there


@dataclass(frozen=True)
class Refusal:
    inspection_id: int
    review_id: int
    board: str
    reason: str


@dataclass
class Preview:
    """What a version would have changed on the last stored boards."""

    boards: int = 0
    skipped: int = 0  # image gone or not alignable
    regions_before: int = 0
    regions_after: int = 0
    removed_on_dismissed: int = 0  # false regions removed (boards operators dismissed)
    removed_on_unreviewed: int = 0  # regions removed on flagged boards nobody reviewed yet
    added: int = 0  # regions that appear (a rollback narrows the tolerance)
    verdicts_changed: dict[str, int] = field(default_factory=dict)  # "review->pass": n
    missed: list[dict[str, Any]] = field(default_factory=list)  # confirmed defects it would have missed

    def describe(self) -> str:
        changed = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts_changed.items())) or "none"
        return (f"on the last {self.boards} stored boards ({self.skipped} skipped): regions {self.regions_before} -> "
                f"{self.regions_after}; false regions removed on dismissed boards {self.removed_on_dismissed}, "
                f"regions removed on unreviewed boards {self.removed_on_unreviewed}, regions added {self.added}; "
                f"verdicts changed: {changed}; confirmed defects missed: {len(self.missed)}")
