"""Operator view: one board's score, region zooms, image, heatmap, regions, and the review form."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from deploy.dashboard import actions, images, zooms
from deploy.dashboard.context import BOARD_KEY, FLASH_KEY, DashboardSettings, current_user, go_to, open_board, plain, store
from inspector.errors import InspectorError
from inspector.store import InspectionRecord, Store
from inspector.store.dashboard_queries import next_unreviewed

# The zoom area on a 1366x768 screen (width, height in px): under the facts, leaving room for the line
# that confirms the last review above them.
ZOOM_AREA = (900.0, 310.0)
HEATMAP_OPACITY = 0.7  # the slider's start: the heatmap is drawn only where the map matters


def _board_id() -> int | None:
    # ?board=<id> lets an operator share or bookmark a board; a click in the queue sets the state.
    raw = st.query_params.get("board")
    if raw is not None and raw.isdigit():
        st.session_state[BOARD_KEY] = int(raw)
    return st.session_state.get(BOARD_KEY)


def _pictures(settings: DashboardSettings, record: InspectionRecord) -> None:
    """Each region zoomed (board, reference, heatmap) right under the facts, in view on a 1366x768
    screen; then the whole board and the heatmap over it side by side."""
    views = zooms.record_views(settings, record)
    if views.overview is not None:  # a missing board image is said in its place below
        zooms.show_zooms(views, record.id, area=ZOOM_AREA)
    left, right = st.columns(2)
    if views.overview is None:
        left.warning(plain(views.missing[0]))
    else:
        left.image(views.overview, caption="Board with numbered regions", width="stretch")
    opacity = right.slider("Heatmap opacity", 0.0, 1.0, HEATMAP_OPACITY, 0.05, key="heatmap_opacity")
    heated = zooms.record_views(settings, record, opacity=opacity, limit=0)
    if heated.overview is not None and not heated.missing:
        right.image(heated.overview, caption="Heatmap over the board, drawn where it matters", width="stretch")
    elif heated.overview is None:
        right.warning(plain(heated.missing[0]))
    else:
        right.warning(plain(heated.missing[-1]))  # the heatmap's file: the board is on the left
    if record.heatmap_path:
        rebuilt = images.reconstruction_beside(settings.resolve(record.heatmap_path))
        if rebuilt is not None:
            with st.expander("Reconstruction (what the model expected to see)"):
                try:
                    st.image(images.to_rgb(images.read_colour(rebuilt, "reconstruction", settings.data_dir)), width="stretch")
                except images.MissingImage as exc:
                    st.warning(plain(str(exc)))


def threshold_label(record: InspectionRecord) -> str:
    """QA versions and bundle calibrations are counted apart: say which one a number belongs to
    (short: a metric cell truncates at about ten characters)."""
    if record.threshold_version is None:
        return "bundle"
    if record.threshold_source == "qa":
        return f"QA v{record.threshold_version}"
    if record.threshold_source == "bundle":
        return f"bundle v{record.threshold_version}"
    return f"v{record.threshold_version}"  # stored before the source was recorded


def _facts(record: InspectionRecord) -> None:
    score, threshold = record.score, record.threshold
    cells = st.columns(4)
    cells[0].metric("Verdict", record.verdict.upper())
    cells[1].metric("Score", "-" if score is None else f"{score:.4f}",
                    delta=None if score is None or threshold is None else f"{score - threshold:+.4f} vs threshold",
                    delta_color="inverse")
    cells[2].metric("Threshold", "-" if threshold is None else f"{threshold:.4f}")
    cells[3].metric("Threshold version", threshold_label(record))
    part = f" · part {record.part_id}" if record.part_id else ""  # what the line's trigger called it
    st.text(f"Station {record.station} · {record.created_at.astimezone():%Y-%m-%d %H:%M:%S} · "
            f"image {record.source_name or record.source_path or '-'}{part} · model {record.model_hash[:16]}")
    if record.error:
        st.error(plain(record.error))


def _region_table(regions: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "#": number, "x1": r["bbox"][0], "y1": r["bbox"][1], "x2": r["bbox"][2], "y2": r["bbox"][3],
        "area (px)": r.get("area"), "peak": round(float(r.get("peak", 0.0)), 4),
        "mean": round(float(r.get("mean", 0.0)), 4),
    } for number, r in enumerate(regions, start=1)])


def _regions(record: InspectionRecord) -> None:
    st.subheader(f"Regions ({len(record.regions)})")
    if record.regions:
        st.dataframe(_region_table(record.regions), hide_index=True, width="stretch")
    else:
        st.write("No region above the pixel threshold.")
    if record.silenced_regions:
        # Never hidden from view: what a learned tolerance kept under the line is listed, with its version.
        st.info(f"{len(record.silenced_regions)} region(s) silenced by learned tolerance version "
                f"{record.tolerance_version}: places where operators dismissed the same false alarm before "
                "(QA's Teaching page shows where and why). They do not count in the verdict.")
        st.dataframe(_region_table(record.silenced_regions), hide_index=True, width="stretch")


def _review_form(results: Store, record: InspectionRecord) -> None:
    history = results.reviews_for(record.id)
    if history:
        st.dataframe(pd.DataFrame([{
            "when": r.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"), "who": r.operator,
            "decision": r.decision, "defect type": r.defect_type, "comment": r.comment,
        } for r in history]), hide_index=True, width="stretch")
    with st.form(f"review-{record.id}", clear_on_submit=True):
        defect_type = st.selectbox("Defect type", actions.DEFECT_TYPES, key=f"defect_type-{record.id}")
        comment = st.text_area("Comment", key=f"comment-{record.id}", height=80)
        confirm_col, dismiss_col = st.columns(2)
        confirm = confirm_col.form_submit_button("Confirm defect", type="primary", width="stretch", shortcut="Y")
        dismiss = dismiss_col.form_submit_button("Dismiss as false alarm", width="stretch", shortcut="N")
    following = next_unreviewed(results, after_id=record.id)
    if following is not None and st.button("Skip to the next board", key="skip-next", shortcut="S"):
        open_board(following)
    if not (confirm or dismiss):
        return
    user = current_user()  # app.py re-checked the session for this run
    try:
        if confirm:
            actions.confirm_defect(results, user, record.id, defect_type, comment)
        else:
            actions.dismiss_false_alarm(results, user, record.id, comment)
    except InspectorError as exc:
        st.error(plain(str(exc)))
        return
    st.session_state[FLASH_KEY] = (f"Board #{record.id} " +
                                   (f"confirmed as {defect_type}." if confirm else "dismissed as a false alarm."))
    st.query_params.pop("board", None)
    following = next_unreviewed(results, after_id=record.id)
    if following is None:
        go_to("queue")  # switch_page ends this run
        return
    open_board(following)


def board_page(settings: DashboardSettings) -> None:
    results = store(settings)
    board_id = _board_id()
    if board_id is None:
        st.title("Board")
        st.info("Open a board from the queue.")
        following = next_unreviewed(results)
        if following is not None and st.button("Open the newest unreviewed board", key="open-next"):
            open_board(following)
        return
    record = results.get_inspection(board_id)
    if record is None:
        st.title("Board")
        st.error(f"Board #{board_id} is not in the store.")
        return
    st.title(f"Board #{record.id}")
    _facts(record)
    _pictures(settings, record)
    _regions(record)
    st.subheader("Review")
    _review_form(results, record)
