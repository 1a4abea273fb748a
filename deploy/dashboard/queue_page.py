"""Operator view: the live queue of flagged boards and each station's state."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from deploy.dashboard.context import DashboardSettings, open_board, store
from inspector.store import Store
from inspector.store.dashboard_queries import last_inspection_times, latest_reviews

QUEUE_LENGTH = 30
QUEUE_COLUMNS = [0.7, 1.6, 1.3, 2.6, 0.8, 1.5, 1.6, 1.0]  # relative widths; the last holds "Open"
STATION_STATE_LABELS = {"running": "running", "stopped": "stopped", "camera_down": "camera down"}


def _age(moment: datetime) -> str:
    seconds = max(0, int((datetime.now(timezone.utc) - moment).total_seconds()))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def station_table(results: Store) -> None:
    stations = results.stations()
    if not stations:
        st.info("No station has reported yet. Start `inspector watch` or `inspector camera`.")
        return
    last_verdicts = last_inspection_times(results)
    st.dataframe(pd.DataFrame([{
        "station": s.name,
        "state": STATION_STATE_LABELS.get(s.state, s.state),
        "last heartbeat": _age(s.last_seen),
        "last image": s.last_image,
        "last image at": _age(last_verdicts[s.name]) if s.name in last_verdicts else "never",
    } for s in stations]), hide_index=True, width="stretch")


def queue_rows(results: Store, include_reviewed: bool) -> None:
    flagged = results.list_inspections(flagged_only=True, unreviewed_only=not include_reviewed, limit=QUEUE_LENGTH)
    counts = results.count_inspections()
    st.caption(f"{counts.unreviewed_flagged} flagged boards waiting for review; "
               f"{counts.total} boards inspected in all. Updated {datetime.now().strftime('%H:%M:%S')}.")
    if not flagged:
        st.success("No flagged boards waiting.")
        return
    reviews = latest_reviews(results, [record.id for record in flagged])
    header = st.columns(QUEUE_COLUMNS)
    for column, title in zip(header, ["board", "time", "station", "image", "verdict", "score / threshold",
                                      "review", ""]):
        column.markdown(f"**{title}**")
    for record in flagged:
        review = reviews.get(record.id)
        cells = st.columns(QUEUE_COLUMNS)
        cells[0].write(f"#{record.id}")
        cells[1].write(record.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
        cells[2].write(record.station)
        cells[3].write(record.source_name or "-")
        cells[4].write(record.verdict.upper())
        cells[5].write(f"{record.score:.3f} / {record.threshold:.3f}"
                       if record.score is not None and record.threshold is not None else "-")
        cells[6].write(f"{review.decision} by {review.operator}" if review else "waiting")
        if cells[7].button("Open", key=f"open-{record.id}", help=f"Review board #{record.id}", width="stretch"):
            open_board(record.id)


def queue_page(settings: DashboardSettings) -> None:
    st.title("Flagged boards")
    results = store(settings)
    include_reviewed = st.toggle("Show reviewed boards too", key="queue_include_reviewed")

    # Only this part re-runs on the timer, so the page never reloads under the operator's cursor.
    @st.fragment(run_every=settings.refresh_seconds)
    def live() -> None:
        st.subheader("Stations")
        station_table(results)
        st.subheader("Queue (newest first)")
        queue_rows(results, include_reviewed)

    live()
