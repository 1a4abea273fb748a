"""QA view: score distributions, ROC/PR, choosing a threshold with a live preview, version history."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from deploy.dashboard import actions, analysis
from deploy.dashboard.context import FLASH_KEY, DashboardSettings, current_user, qa_model
from inspector.errors import InspectorError
from inspector.store import Store, ThresholdRecord
from inspector.store.dashboard_queries import latest_image_threshold, latest_reviews, scored_history

BY_SLIDER = "slider"
BY_FALSE_ALARMS = "target false-alarm rate"
BY_MISSES = "target miss rate"
GROUP_COLOURS = {analysis.PASSED: "#4c78a8", analysis.DISMISSED: "#72b7b2", analysis.CONFIRMED: "#e45756",
                 analysis.UNREVIEWED: "#bab0ac"}


def _histogram(frame: pd.DataFrame, threshold: float) -> alt.LayerChart:
    bars = alt.Chart(frame).mark_bar(opacity=0.6).encode(
        x=alt.X("score:Q", bin=alt.Bin(maxbins=40), title="image score"),
        y=alt.Y("count():Q", stack=None, title="boards"),
        color=alt.Color("group:N", scale=alt.Scale(domain=list(GROUP_COLOURS), range=list(GROUP_COLOURS.values())),
                        title="boards"),
    )
    rule = alt.Chart(pd.DataFrame({"threshold": [threshold]})).mark_rule(color="black", strokeDash=[4, 3]).encode(
        x="threshold:Q")
    return bars + rule


def _curves(frame: pd.DataFrame) -> None:
    found = analysis.curves(frame)
    if found is None:
        st.info("ROC and precision-recall need reviewed history with both good boards and confirmed defects.")
        return
    left, right = st.columns(2)
    left.metric("ROC AUC", f"{found.roc_auc:.3f}")
    left.line_chart(found.roc, x="false_positive_rate", y="true_positive_rate")
    right.metric("Average precision", f"{found.average_precision:.3f}")
    right.line_chart(found.pr, x="recall", y="precision")


def _choose_threshold(frame: pd.DataFrame, current: float) -> float | None:
    method = st.radio("Choose the new threshold by", [BY_SLIDER, BY_FALSE_ALARMS, BY_MISSES], horizontal=True,
                      key="qa_method")
    good = frame.loc[frame["group"].isin([analysis.PASSED, analysis.DISMISSED]), "score"].to_numpy()
    defects = frame.loc[frame["group"] == analysis.CONFIRMED, "score"].to_numpy()
    try:
        if method == BY_FALSE_ALARMS:
            rate = st.number_input("Target false-alarm rate (% of good boards flagged)", 0.0, 50.0, 1.0, 0.1,
                                   key="qa_far")
            return analysis.threshold_for_false_alarm_rate(good, rate / 100.0)
        if method == BY_MISSES:
            rate = st.number_input("Target miss rate (% of confirmed defects passed)", 0.0, 50.0, 0.0, 0.1,
                                   key="qa_miss")
            return analysis.threshold_for_miss_rate(defects, rate / 100.0)
    except ValueError as exc:
        st.warning(f"{exc}; use the slider instead.")
        return None
    scores = frame["score"].to_numpy()
    low = float(min(scores.min(), current)) if scores.size else 0.0
    high = float(max(scores.max(), current)) if scores.size else max(1.0, 2 * current)
    span = max(high - low, 1e-6)
    low, high = max(0.0, low - 0.05 * span), high + 0.05 * span
    step = float(10 ** np.floor(np.log10(span / 200))) if span > 0 else 0.001
    return st.slider("Threshold", low, high, float(min(max(current, low), high)), step, format="%.4f",
                     key="qa_threshold")


def _versions(results: Store, model_hash: str) -> list[ThresholdRecord]:
    history = results.threshold_history(model_hash)
    st.subheader("Threshold versions (append-only)")
    if not history:
        st.write("No QA threshold change yet: the line uses the bundle's calibration.")
        return history
    st.dataframe(pd.DataFrame([{
        "version": v.version, "image threshold": v.image_threshold, "previous": v.previous_image_threshold,
        "pixel threshold": v.pixel_threshold, "author": v.author,
        "when": v.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"), "reason": v.reason,
    } for v in reversed(history)]), hide_index=True, width="stretch")
    return history


def _restore_form(results: Store, history: list[ThresholdRecord]) -> None:
    earlier = history[:-1]
    if not earlier:
        return
    with st.form("restore_threshold", clear_on_submit=True):
        st.write("Restore an earlier version (it is saved again as a new version).")
        chosen = st.selectbox("Version", [v.version for v in reversed(earlier)], key="qa_restore_version",
                              format_func=lambda n: f"v{n}: {next(v.image_threshold for v in earlier if v.version == n):.4f}")
        reason = st.text_input("Reason for restoring", key="qa_restore_reason")
        submitted = st.form_submit_button("Restore as new version")
    if submitted:
        version = next(v for v in earlier if v.version == chosen)
        try:
            saved = actions.restore_threshold(results, current_user(), version, reason)
        except InspectorError as exc:
            st.error(str(exc))
            return
        st.session_state[FLASH_KEY] = f"Saved version {saved.version} (threshold {saved.image_threshold:.4f})."
        st.rerun()


def qa_page(settings: DashboardSettings) -> None:
    st.title("Thresholds (QA)")
    chosen = qa_model(settings, "Threshold changes need a QA login.", "qa_model")
    if chosen is None:
        return
    results, model_hash = chosen
    user = current_user()
    last_n = int(st.number_input("Boards of history", 10, 100_000, 1000, 100, key="qa_history"))
    records = scored_history(results, model_hash=model_hash, limit=last_n)
    frame = analysis.history_frame(records, latest_reviews(results, [r.id for r in records]))
    version = results.current_threshold(model_hash)
    current = version.image_threshold if version else latest_image_threshold(results, model_hash)
    if frame.empty or current is None:
        st.info("No scored boards for this model yet.")
        _versions(results, model_hash)
        return
    st.caption(f"Current threshold {current:.4f} "
               + (f"(QA version {version.version} by {version.author})" if version else "(bundle calibration)"))

    st.subheader("Score distributions")
    threshold = _choose_threshold(frame, current)
    shown = threshold if threshold is not None else current
    st.altair_chart(_histogram(frame, shown), width="stretch")
    result = analysis.preview(frame, shown)
    cells = st.columns(4)
    cells[0].metric("New threshold", f"{shown:.4f}", delta=f"{shown - current:+.4f}", delta_color="off")
    cells[1].metric("Would be flagged", f"{result.flagged} of {result.boards}")
    cells[2].metric("Confirmed defects missed", f"{result.missed_defects} of {result.confirmed_defects}")
    cells[3].metric("False alarms", f"{result.false_alarms} of {result.good_boards}")
    st.write(result.sentence())

    with st.form("save_threshold", clear_on_submit=True):
        reason = st.text_area("Reason (kept in the audit trail)", key="qa_reason", height=80)
        submitted = st.form_submit_button("Save as new threshold version", type="primary",
                                          disabled=threshold is None)
    if submitted and threshold is not None:
        try:
            saved = actions.save_threshold(results, user, model_hash, threshold, reason,
                                           version.pixel_threshold if version else None)
        except InspectorError as exc:
            st.error(str(exc))
        else:
            st.session_state[FLASH_KEY] = (f"Saved threshold version {saved.version}: {saved.image_threshold:.4f} "
                                           "(the line uses it from its next image).")
            st.rerun()

    st.subheader("ROC and precision-recall (reviewed history)")
    _curves(frame)
    _restore_form(results, _versions(results, model_hash))
