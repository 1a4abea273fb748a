"""Operator view: the live queue of flagged boards as cards, reviewed from the queue itself.

The newest waiting board is a wide card: the whole board (heatmap where it matters, regions
outlined and numbered) beside a zoom of each region (board, reference, heatmap; deploy/dashboard/
zooms.py), sized so the zooms are in view on a 1366x768 screen. Its buttons answer keys (shown on
the buttons): Y confirms, N dismisses, O opens. The boards after it are smaller cards in a grid. A
reviewed board leaves the queue at once (only the queue re-runs, never the whole page). QA may
dismiss several ticked boards at once. Every refresh re-checks the login.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from deploy.dashboard import actions, zooms
from deploy.dashboard.context import DashboardSettings, open_board, plain, session_user, show_failure, store
from inspector.errors import InspectorError
from inspector.store import InspectionRecord, Store
from inspector.store.dashboard_queries import last_inspection_times, latest_reviews

QUEUE_LENGTH = 12
CARDS_PER_ROW = 3
# The newest board's card: the whole board on the left, its zooms on the right, up to three abreast.
FIRST_CARD_COLUMNS = [1.0, 2.4]
FIRST_OVERVIEW_WIDTH = 320  # px drawn (outlines at the size seen); shown to fit its column
# The first card's zoom area on a 1366x768 screen (width, height in px): beside the board, from under
# the queue's caption to the window's bottom.
FIRST_ZOOM_AREA = (600.0, 450.0)
THUMBNAIL_WIDTH = 280
SMALL_CARD_ZOOMS = 3  # zooms on the later cards (all of them once the board comes first, or on its page)
CARD_OPACITY = 0.7  # the heatmap over the card's board, where it matters
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


def _card_picture(views: zooms.BoardViews) -> None:
    if views.overview is None:
        st.text(views.missing[0] if views.missing else "no board image")  # the reason, never Markdown
    else:
        st.image(views.overview, width="stretch")


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
    """The newest board wide, its zooms beside the whole board; the others small, zooms below it."""
    with st.container(border=True, key=f"card-{record.id}"):
        if first:
            board_column, zoom_column = st.columns(FIRST_CARD_COLUMNS)
            views = zooms.record_views(settings, record, overview_width=FIRST_OVERVIEW_WIDTH, opacity=CARD_OPACITY)
            with zoom_column:
                zooms.show_zooms(views, record.id, area=FIRST_ZOOM_AREA,
                                 rest_shown="outlined on the board and listed on its page")
            with board_column:
                _card_picture(views)
                _card_facts(settings, results, record, review_text, first, qa)
        else:
            views = zooms.record_views(settings, record, overview_width=THUMBNAIL_WIDTH, opacity=CARD_OPACITY,
                                       limit=SMALL_CARD_ZOOMS)
            _card_picture(views)
            zooms.show_zooms(views, record.id, rest_shown="outlined on the board; all zoomed on its page")
            _card_facts(settings, results, record, review_text, first, qa)


def _card_facts(settings: DashboardSettings, results: Store, record: InspectionRecord, review_text: str | None,
                first: bool, qa: bool) -> None:
    score = (f"{record.score:.3f} / {record.threshold:.3f}"
             if record.score is not None and record.threshold is not None else "-")
    # st.text, never Markdown: image names come from the line's inbox.
    count = len(record.regions)
    st.text(f"#{record.id} {record.verdict.upper()}  score {score}\n"
            f"{count} region{'' if count == 1 else 's'} · {record.station} · {record.created_at.astimezone():%H:%M:%S}\n"
            f"{record.source_name or '-'}")
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
    st.caption(f"Queue, newest first: {counts.unreviewed_flagged} flagged boards waiting for review; "
               f"{counts.total} boards inspected in all. Updated {datetime.now().strftime('%H:%M:%S')}.")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice is not None and notice[0] == "ok":
        st.toast(plain(notice[1]), icon=":material/check:")  # floats: the next card stays where the last one was
    elif notice is not None:
        st.error(plain(notice[1]))
    if not flagged:
        st.success("No flagged boards waiting.")
        return
    reviews = latest_reviews(results, [record.id for record in flagged])
    chosen = [r.id for r in flagged if st.session_state.get(f"select-{r.id}")] if qa else []
    if chosen:
        st.button(f"Dismiss {len(chosen)} selected boards", key="dismiss-selected", on_click=_dismiss_selected,
                  args=(settings, results, chosen))
    def review_text(record: InspectionRecord) -> str | None:
        review = reviews.get(record.id)
        return f"{review.decision} by {review.operator}" if review else None

    _card(settings, results, flagged[0], review_text(flagged[0]), first=True, qa=qa)
    rest = flagged[1:]
    for start in range(0, len(rest), CARDS_PER_ROW):
        for column, record in zip(st.columns(CARDS_PER_ROW), rest[start:start + CARDS_PER_ROW]):
            with column:
                _card(settings, results, record, review_text(record), first=False, qa=qa)


def queue_page(settings: DashboardSettings) -> None:
    st.title("Flagged boards")
    results = store(settings)
    wanted = st.session_state.pop(OPEN_KEY, None)
    if wanted is not None:
        open_board(wanted)
    # The queue's settings in the sidebar: the newest board's zooms must stay in view on a 1366x768 screen.
    with st.sidebar:
        st.selectbox("Defect type for Confirm", actions.DEFECT_TYPES, index=actions.DEFECT_TYPES.index("other"),
                     key=QUEUE_DEFECT_KEY)
        include_reviewed = st.toggle("Show reviewed boards too", key="queue_include_reviewed")
        st.caption("Keys for the first board: **Y** confirm · **N** dismiss · **O** open. "
                   "On a board page: **Y** confirm · **N** dismiss · **S** skip to the next board.")

    # Only this part re-runs on the timer, so the page never reloads under the operator's cursor.
    @st.fragment(run_every=settings.refresh_seconds)
    def live() -> None:
        user = session_user(settings, touch=False)  # every refresh re-checks the login
        if user is None or st.session_state.get(OPEN_KEY) is not None:
            st.rerun(scope="app")  # the login link, or the board asked for
        try:
            queue_cards(settings, results, include_reviewed, qa=user.is_qa)
            st.subheader("Stations")
            station_table(results)
        except Exception as exc:  # noqa: BLE001 - a fragment shows its own errors: keep them plain
            show_failure(exc)

    live()
