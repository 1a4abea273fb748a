"""Numbers behind the dashboard: labelled history, threshold choice, preview, ROC/PR, line rates.

Pure functions over pandas frames (no Streamlit, no store), so the QA arithmetic is tested
directly. A board is flagged when its score reaches the threshold (`flags`, score >= threshold),
the engine's fail rule (inspector.core.scoring.decide_verdict). Under that line the engine still sends a
board whose regions pass the pixel threshold to review; the preview judges by image score only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

# Groups of stored boards by what we know about them.
PASSED = "passed"  # not flagged, never reviewed: taken as good
DISMISSED = "dismissed"  # flagged, an operator called it a false alarm: good
CONFIRMED = "confirmed"  # flagged, an operator confirmed a defect
UNREVIEWED = "unreviewed"  # flagged, nobody has looked yet: unknown

HISTORY_COLUMNS = ["id", "created_at", "station", "score", "threshold", "verdict", "group", "defect_type"]


def flags(scores: np.ndarray | float, threshold: float) -> np.ndarray | bool:
    return np.asarray(scores) >= threshold


def history_frame(inspections: Iterable[Any], latest_reviews: Mapping[int, Any]) -> pd.DataFrame:
    """One row per scored inspection with its group; `latest_reviews` maps inspection id to the
    newest review (a later review overrides an earlier one of the same board)."""
    rows = []
    for record in inspections:
        if record.score is None or record.verdict == "error":
            continue
        review = latest_reviews.get(record.id)
        if review is not None:
            group = CONFIRMED if review.decision == "confirm" else DISMISSED
        elif record.verdict in ("fail", "review"):
            group = UNREVIEWED
        else:
            group = PASSED
        rows.append({
            "id": record.id, "created_at": record.created_at, "station": record.station,
            "score": float(record.score), "threshold": float(record.threshold or 0.0), "verdict": record.verdict,
            "group": group, "defect_type": review.defect_type if review is not None and group == CONFIRMED else "",
        })
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    if not frame.empty:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def labelled(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Scores and truth (1 = defect) of the boards whose truth is known (unreviewed flags left out)."""
    known = frame[frame["group"].isin([PASSED, DISMISSED, CONFIRMED])]
    return known["score"].to_numpy(dtype=float), (known["group"] == CONFIRMED).to_numpy(dtype=int)


def threshold_for_false_alarm_rate(good_scores: np.ndarray, rate: float) -> float:
    """The lowest threshold that flags at most `rate` of the good boards."""
    good = np.sort(np.asarray(good_scores, dtype=float))
    if good.size == 0:
        raise ValueError("no good boards in the history to set a false-alarm rate on")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"false-alarm rate must be in [0, 1), got {rate}")
    allowed = int(np.floor(rate * good.size))
    # Just above good[n - allowed - 1], only the `allowed` highest good boards reach the threshold.
    return float(np.nextafter(good[good.size - allowed - 1], np.inf))


def threshold_for_miss_rate(defect_scores: np.ndarray, rate: float) -> float:
    """The highest threshold that misses at most `rate` of the confirmed defects."""
    defects = np.sort(np.asarray(defect_scores, dtype=float))
    if defects.size == 0:
        raise ValueError("no confirmed defects in the history to set a miss rate on")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"miss rate must be in [0, 1), got {rate}")
    allowed = int(np.floor(rate * defects.size))
    # A defect is missed when its score is below the threshold; at defects[allowed] only the
    # `allowed` lowest ones are (fewer with ties).
    return float(defects[allowed])


@dataclass(frozen=True)
class Preview:
    """What a threshold would have done to the history."""

    boards: int
    flagged: int
    confirmed_defects: int
    missed_defects: int
    good_boards: int
    false_alarms: int

    def sentence(self) -> str:
        return (f"Of the last {self.boards} boards, {self.flagged} would be flagged; "
                f"{self.missed_defects} of {self.confirmed_defects} confirmed defects would be missed; "
                f"{self.false_alarms} of {self.good_boards} good boards would be false alarms.")


def preview(frame: pd.DataFrame, threshold: float) -> Preview:
    scores = frame["score"].to_numpy(dtype=float)
    groups = frame["group"].to_numpy()
    flagged = np.asarray(flags(scores, threshold))
    confirmed = groups == CONFIRMED
    good = np.isin(groups, [PASSED, DISMISSED])
    return Preview(
        boards=int(scores.size), flagged=int(flagged.sum()),
        confirmed_defects=int(confirmed.sum()), missed_defects=int((confirmed & ~flagged).sum()),
        good_boards=int(good.sum()), false_alarms=int((good & flagged).sum()),
    )


@dataclass(frozen=True)
class Curves:
    roc: pd.DataFrame  # false_positive_rate, true_positive_rate
    pr: pd.DataFrame  # recall, precision
    roc_auc: float
    average_precision: float


def curves(frame: pd.DataFrame) -> Curves | None:
    """ROC and precision-recall from reviewed history; None until both good and defect boards exist."""
    scores, truth = labelled(frame)
    if truth.size == 0 or truth.min() == truth.max():
        return None
    fpr, tpr, _ = roc_curve(truth, scores)
    precision, recall, _ = precision_recall_curve(truth, scores)
    return Curves(
        roc=pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr}),
        pr=pd.DataFrame({"recall": recall, "precision": precision}),
        roc_auc=float(auc(fpr, tpr)),
        average_precision=float(average_precision_score(truth, scores)),
    )


def hourly_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Boards per hour, flag rate and confirmed-defect rate, indexed by the hour."""
    if frame.empty:
        return pd.DataFrame(columns=["boards", "flag_rate", "confirmed_rate"])
    hours = frame["created_at"].dt.floor("h")
    grouped = frame.assign(
        hour=hours,
        flagged=frame["verdict"].isin(["fail", "review"]),
        confirmed=frame["group"] == CONFIRMED,
    ).groupby("hour")
    rates = pd.DataFrame({
        "boards": grouped.size(),
        "flag_rate": grouped["flagged"].mean(),
        "confirmed_rate": grouped["confirmed"].mean(),
    })
    return rates.sort_index()


def defect_type_counts(frame: pd.DataFrame) -> pd.Series:
    confirmed = frame[frame["group"] == CONFIRMED]
    return confirmed["defect_type"].replace("", "unspecified").value_counts().rename("boards")


SHIFT_SUMMARY_COLUMNS = ["station", "hour", "boards", "flagged", "confirmed", "dismissed", "unreviewed"]


def shift_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Boards, flagged, confirmed, dismissed and still unreviewed per station and per hour (UTC),
    the table a shift hands over (downloaded as CSV from the line overview)."""
    if frame.empty:
        return pd.DataFrame(columns=SHIFT_SUMMARY_COLUMNS)
    marked = frame.assign(
        hour=frame["created_at"].dt.floor("h"),
        flagged=frame["verdict"].isin(["fail", "review"]),
        confirmed=frame["group"] == CONFIRMED,
        dismissed=frame["group"] == DISMISSED,
        unreviewed=frame["group"] == UNREVIEWED,
    )
    grouped = marked.groupby(["station", "hour"])
    summary = pd.DataFrame({
        "boards": grouped.size(),
        "flagged": grouped["flagged"].sum(),
        "confirmed": grouped["confirmed"].sum(),
        "dismissed": grouped["dismissed"].sum(),
        "unreviewed": grouped["unreviewed"].sum(),
    }).reset_index().sort_values(["station", "hour"])
    summary["hour"] = summary["hour"].dt.strftime("%Y-%m-%dT%H:00Z")
    return summary[SHIFT_SUMMARY_COLUMNS].astype({c: int for c in SHIFT_SUMMARY_COLUMNS[2:]})


def shift_summary_csv(frame: pd.DataFrame) -> bytes:
    return shift_summary(frame).to_csv(index=False).encode("utf-8")
