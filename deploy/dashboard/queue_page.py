"""Operator view: the live queue of flagged boards as cards, reviewed from the queue itself.

Each waiting board is a card with its overlay thumbnail (board + heatmap + numbered regions),
verdict, score and station, and one-click Confirm / Dismiss / Open buttons. The newest board's
buttons also answer keys (shown on the buttons): Y confirms, N dismisses, O opens. A reviewed board
leaves the queue at once (only the queue re-runs, never the whole page). QA may dismiss several
ticked boards at once. Every refresh re-checks the login.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from deploy.dashboard import actions, images
from deploy.dashboard.context import DashboardSettings, open_board, plain, session_user, show_failure, store
from inspector.errors import InspectorError
from inspector.store import InspectionRecord, Store
from inspector.store.dashboard_queries import last_inspection_times, latest_reviews

QUEUE_LENGTH = 12
CARDS_PER_ROW = 3
STATION_STATE_LABELS = {"running": "running", "stopped": "stopped", "camera_down": "camera down"}
SHORTCUTS = {"confirm": "Y", "dismiss": "N", "open": "O"}
QUEUE_DEFECT_KEY = "queue_defect_type"


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


@st.cache_data(show_spinner=False, max_entries=512)
def _thumbnail(image_path: str, heatmap_path: str, regions: tuple[tuple[int, int, int, int], ...],
               root: str) -> np.ndarray | str:
    """The card picture (RGB), or the reason there is none. Stored files never change, so it is cached."""
    try:
        board = images.read_colour(image_path, "board image", root=Path(root))
    except images.MissingImage as exc:
        return str(exc)
    try:
        heatmap = images.read_colour(heatmap_path, "heatmap", root=Path(root))
        board = images.blend(board, heatmap, 0.5)
    except images.MissingImage:
        pass  # the board alone still helps
    boxed = images.draw_regions(board, [{"bbox": list(box)} for box in regions])
    return images.to_rgb(images.thumbnail(boxed))


def _card_picture(settings: DashboardSettings, record: InspectionRecord) -> None:
    regions = tuple(tuple(int(v) for v in r["bbox"]) for r in record.regions if "bbox" in r)
    picture = _thumbnail(str(settings.resolve(record.image_path)) if record.image_path else "",
                         str(settings.resolve(record.heatmap_path)) if record.heatmap_path else "",
                         regions, str(settings.data_dir))  # type: ignore[arg-type]
    if isinstance(picture, str):
        st.text(picture)
    else:
        st.image(picture, width="stretch")


NOTICE_KEY = "queue_notice"
OPEN_KEY = "queue_open_board"


def _ask_open(inspection_id: int) -> None:
    """Button callback: the page switch happens in a whole-page run (queue_page), not inside the
    auto-refreshing fragment, whose timer would otherwise fire into the board page."""
    st.session_state[OPEN_KEY] = inspection_id


def _review(settings: DashboardSettings, results: Store, inspection_id: int, decision: str,
            waiting_only: bool) -> None:
    """Button callback: runs before the queue re-runs, so the reviewed board is gone from it."""
    user = session_user(settings, touch=True)
    if user is None:
        return  # the login ended: the refresh that follows shows the login link
    if waiting_only and latest_reviews(results, [inspection_id]):
        return  # a key pressed twice, or a colleague was quicker: the board is no longer waiting
    defect_type = st.session_state.get(QUEUE_DEFECT_KEY, "other")
    try:
        if decision == "confirm":
            actions.confirm_defect(results, user, inspection_id, defect_type)
            st.session_state[NOTICE_KEY] = ("ok", f"Board #{inspection_id} confirmed as {defect_type}.")
        else:
            actions.dismiss_false_alarm(results, user, inspection_id)
            st.session_state[NOTICE_KEY] = ("ok", f"Board #{inspection_id} dismissed as a false alarm.")
    except InspectorError as exc:
        st.session_state[NOTICE_KEY] = ("error", str(exc))


def _card(settings: DashboardSettings, results: Store, record: InspectionRecord, review_text: str | None,
          first: bool, qa: bool) -> None:
    with st.container(border=True):
        _card_picture(settings, record)
        score = (f"{record.score:.3f} / {record.threshold:.3f}"
                 if record.score is not None and record.threshold is not None else "-")
        # st.text, never Markdown: image names come from the line's inbox.
        st.text(f"#{record.id} {record.verdict.upper()}  score {score}\n"
                f"{record.station} · {record.created_at.astimezone():%H:%M:%S}\n{record.source_name or '-'}")
        if review_text:
            st.text(review_text)
        confirm, dismiss = st.columns(2)
        keys = SHORTCUTS if first else {}
        confirm.button("Confirm", key=f"confirm-{record.id}", type="primary", width="stretch",
                       shortcut=keys.get("confirm"), help=f"Confirm board #{record.id} as a defect",
                       on_click=_review, args=(settings, results, record.id, "confirm", review_text is None))
        dismiss.button("Dismiss", key=f"dismiss-{record.id}", width="stretch", shortcut=keys.get("dismiss"),
                       help=f"Dismiss board #{record.id} as a false alarm",
                       on_click=_review, args=(settings, results, record.id, "dismiss", review_text is None))
        st.button("Open", key=f"open-{record.id}", width="stretch", shortcut=keys.get("open"),
                  help=f"Review board #{record.id} in detail", on_click=_ask_open, args=(record.id,))
        if qa:
            st.checkbox("select", key=f"select-{record.id}")


def _dismiss_selected(settings: DashboardSettings, results: Store, chosen: list[int]) -> None:
    """Button callback (QA): dismiss every ticked board."""
    user = session_user(settings, touch=True)
    if user is None:
        return
    try:
        actions.dismiss_many(results, user, chosen)
    except InspectorError as exc:
        st.session_state[NOTICE_KEY] = ("error", str(exc))
        return
    for inspection_id in chosen:
        st.session_state.pop(f"select-{inspection_id}", None)
    st.session_state[NOTICE_KEY] = ("ok", f"Dismissed {len(chosen)} boards as false alarms.")


def queue_cards(settings: DashboardSettings, results: Store, include_reviewed: bool, qa: bool) -> None:
    flagged = results.list_inspections(flagged_only=True, unreviewed_only=not include_reviewed, limit=QUEUE_LENGTH)
    counts = results.count_inspections()
    st.caption(f"{counts.unreviewed_flagged} flagged boards waiting for review; "
               f"{counts.total} boards inspected in all. Updated {datetime.now().strftime('%H:%M:%S')}.")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice is not None:
        (st.success if notice[0] == "ok" else st.error)(plain(notice[1]))
    if not flagged:
        st.success("No flagged boards waiting.")
        return
    reviews = latest_reviews(results, [record.id for record in flagged])
    chosen = [r.id for r in flagged if st.session_state.get(f"select-{r.id}")] if qa else []
    if chosen:
        st.button(f"Dismiss {len(chosen)} selected boards", key="dismiss-selected", on_click=_dismiss_selected,
                  args=(settings, results, chosen))
    for start in range(0, len(flagged), CARDS_PER_ROW):
        for column, record in zip(st.columns(CARDS_PER_ROW), flagged[start:start + CARDS_PER_ROW]):
            review = reviews.get(record.id)
            with column:
                _card(settings, results, record, f"{review.decision} by {review.operator}" if review else None,
                      first=start == 0 and record is flagged[0], qa=qa)


def queue_page(settings: DashboardSettings) -> None:
    st.title("Flagged boards")
    results = store(settings)
    wanted = st.session_state.pop(OPEN_KEY, None)
    if wanted is not None:
        open_board(wanted)
    include_reviewed = st.toggle("Show reviewed boards too", key="queue_include_reviewed")
    st.selectbox("Defect type for Confirm", actions.DEFECT_TYPES, index=actions.DEFECT_TYPES.index("other"),
                 key=QUEUE_DEFECT_KEY)
    st.caption("Keys for the first board: **Y** confirm · **N** dismiss · **O** open. "
               "On a board page: **Y** confirm · **N** dismiss · **S** skip to the next board.")

    # Only this part re-runs on the timer, so the page never reloads under the operator's cursor.
    @st.fragment(run_every=settings.refresh_seconds)
    def live() -> None:
        user = session_user(settings, touch=False)  # every refresh re-checks the login
        if user is None or st.session_state.get(OPEN_KEY) is not None:
            st.rerun(scope="app")  # the login link, or the board asked for
        try:
            st.subheader("Queue (newest first)")
            queue_cards(settings, results, include_reviewed, qa=user.is_qa)
            st.subheader("Stations")
            station_table(results)
        except Exception as exc:  # noqa: BLE001 - a fragment shows its own errors: keep them plain
            show_failure(exc)

    live()
