"""Operator view: the line over time (boards per hour, flag and confirmed-defect rates, defect types)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import streamlit as st

from deploy.dashboard import analysis
from deploy.dashboard.context import DashboardSettings, store
from inspector.store.dashboard_queries import latest_reviews, scored_history

PERIODS = {"last 24 hours": timedelta(hours=24), "last 7 days": timedelta(days=7), "last 30 days": timedelta(days=30)}


def overview_page(settings: DashboardSettings) -> None:
    st.title("Line overview")
    results = store(settings)
    period = st.segmented_control("Period", list(PERIODS), default="last 24 hours", key="overview_period")
    since = datetime.now(timezone.utc) - PERIODS[period or "last 24 hours"]
    records = scored_history(results, since=since)
    frame = analysis.history_frame(records, latest_reviews(results, [r.id for r in records]))
    if frame.empty:
        st.info("No boards inspected in this period.")
        return
    flagged = frame["verdict"].isin(["fail", "review"])
    cells = st.columns(4)
    cells[0].metric("Boards", len(frame))
    cells[1].metric("Flag rate", f"{flagged.mean():.1%}")
    cells[2].metric("Confirmed defects", int((frame["group"] == analysis.CONFIRMED).sum()))
    cells[3].metric("Waiting for review", int((frame["group"] == analysis.UNREVIEWED).sum()))
    st.download_button("Download shift summary (CSV)", analysis.shift_summary_csv(frame),
                       file_name=f"shift-summary-{since:%Y%m%dT%H%M}Z.csv", mime="text/csv",
                       help="Boards, flagged, confirmed, dismissed and unreviewed per station and hour (UTC)")

    rates = analysis.hourly_rates(frame)
    st.subheader("Boards per hour")
    st.bar_chart(rates["boards"], y_label="boards")
    st.subheader("Flag rate and confirmed-defect rate per hour")
    st.line_chart(rates[["flag_rate", "confirmed_rate"]], y_label="share of boards")
    st.subheader("Confirmed defects by type")
    counts = analysis.defect_type_counts(frame)
    if counts.empty:
        st.write("No confirmed defects in this period.")
    else:
        st.bar_chart(counts, horizontal=True, x_label="boards")
