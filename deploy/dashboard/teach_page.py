"""Teaching (QA): the dismissals waiting to be learned, a preview, Teach, the versions and rollback.

What a version changes is shown before it is stored: the lessons (each dismissed region and the
tolerance it sets), the refusals (regions too large to be a place), and the preview on the last
stored boards (false regions removed, confirmed defects missed: any refuses the version). The figure
shows where the tolerance is wider, over the reference board. The work is inspector/review/teach.py,
the same as `inspector learn`; pages write only through deploy/dashboard/actions.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from deploy.dashboard import actions
from deploy.dashboard.context import FLASH_KEY, DashboardSettings, current_user, plain, qa_model
from inspector.errors import InspectorError
from inspector.review.plan import TeachingPlan
from inspector.store import Store, ToleranceRecord

PREVIEW_KEY = "teach_preview"


def _bundle(results: Store, model_hash: str) -> Path | None:
    record = results.get_model(model_hash)
    path = Path(record.bundle_path) if record is not None and record.bundle_path else None
    return path if path is not None and path.is_dir() else None


def _waiting(results: Store, model_hash: str, current: ToleranceRecord | None) -> None:
    after = current.through_review_id if current is not None else 0
    reviews = [(r, i) for r, i in results.latest_reviews(model_hash) if r.id > after]
    dismissed = [i.id for r, i in reviews if r.decision == "dismiss"]
    confirmed = [i.id for r, i in reviews if r.decision == "confirm"]
    st.write(f"Since version {current.version if current else 0}: **{len(dismissed)}** boards dismissed as false alarms "
             f"(to learn from), **{len(confirmed)}** confirmed defects (their places are protected).")
    if dismissed:
        st.caption("Dismissed boards: " + ", ".join(f"#{n}" for n in dismissed[:40])
                   + (f" and {len(dismissed) - 40} more" if len(dismissed) > 40 else ""))


def _show_plan(made: TeachingPlan) -> None:
    preview = made.preview
    cells = st.columns(4)
    cells[0].metric("Lessons", len(made.lessons), help="dismissed regions taken as lessons")
    cells[1].metric("Refused", len(made.refusals), help="regions too large to be a place: a set-up problem")
    cells[2].metric("False regions removed", preview.removed_on_dismissed,
                    help=f"on the last {preview.boards} stored boards operators dismissed")
    cells[3].metric("Confirmed defects missed", len(preview.missed), help="any refuses the version")
    st.image(made.figure, caption="Where the tolerance would be wider (over the reference board)", width="stretch")
    st.write(plain(preview.describe()))
    if made.lessons:
        st.dataframe(pd.DataFrame([{"board": f"#{lesson.inspection_id} {lesson.board}", "box": str(list(lesson.box)),
                                    "showed (x line)": round(lesson.showed, 2), "tolerance": round(lesson.factor, 2),
                                    "note": "capped: still flagged" if lesson.capped else
                                    "kept off a confirmed defect" if lesson.clipped_by_protection else ""}
                                   for lesson in made.lessons]), hide_index=True, width="stretch")
    for refusal in made.refusals:
        st.warning(plain(f"Board #{refusal.inspection_id} {refusal.board}: {refusal.reason}"))


def _teach_form(results: Store, bundle: Path) -> None:
    with st.form("teach", clear_on_submit=False):
        reason = st.text_area("Reason (kept in the audit trail)", key="teach_reason", height=70)
        left, right = st.columns(2)
        preview = left.form_submit_button("Preview", width="stretch")
        teach = right.form_submit_button("Teach: store as a new version", type="primary", width="stretch")
    if not (preview or teach):
        made = st.session_state.get(PREVIEW_KEY)
        if made is not None:
            _show_plan(made)
        return
    try:
        with st.spinner("Judging the reviewed and the last stored boards again..."):
            made, record = actions.teach_station(results, current_user(), bundle, reason or "preview",
                                                 dry_run=not teach)
    except InspectorError as exc:
        st.error(plain(str(exc)))
        return
    if record is None:
        st.session_state[PREVIEW_KEY] = made
        _show_plan(made)
        return
    st.session_state.pop(PREVIEW_KEY, None)
    st.session_state[FLASH_KEY] = (f"Stored learned tolerance version {record.version}: {len(made.lessons)} lessons; "
                                   "the line applies it from its next board.")
    st.rerun()


def _history(results: Store, model_hash: str) -> list[ToleranceRecord]:
    history = results.tolerance_history(model_hash)
    st.subheader("Versions (append-only)")
    if not history:
        st.write("Nothing learned yet: the line judges with the bundle's own tolerance.")
        return history
    st.dataframe(pd.DataFrame([{
        "version": v.version, "author": v.author, "when": v.created_at.astimezone().strftime("%Y-%m-%d %H:%M"),
        "reason": v.reason, "lessons": len(v.summary.get("lessons", [])), "refused": len(v.summary.get("refusals", [])),
        "widened": f"{v.summary.get('widened_share', 0.0):.2%}",
        "copy of": "" if v.restored_from is None else f"v{v.restored_from}",
        "preview": v.summary.get("preview_text", ""),
    } for v in reversed(history)]), hide_index=True, width="stretch")
    return history


def _rollback_form(results: Store, bundle: Path, history: list[ToleranceRecord]) -> None:
    with st.form("tolerance_rollback", clear_on_submit=True):
        st.write("Roll back: an earlier version (0: nothing learned) comes back as a new version, after a preview.")
        chosen = st.selectbox("Version", [0] + [v.version for v in history[:-1]], key="teach_rollback_version",
                              format_func=lambda n: "v0: the bundle's own" if n == 0 else f"v{n}")
        reason = st.text_input("Reason for rolling back", key="teach_rollback_reason")
        submitted = st.form_submit_button("Roll back as a new version")
    if submitted:
        try:
            shown, record = actions.roll_back_tolerance(results, current_user(), bundle, int(chosen), reason)
        except InspectorError as exc:
            st.error(plain(str(exc)))
            return
        st.session_state[FLASH_KEY] = f"Stored version {record.version} = version {chosen}. {shown.describe()}"
        st.rerun()


def teach_page(settings: DashboardSettings) -> None:
    st.title("Teaching (QA)")
    chosen = qa_model(settings, "Teaching the station needs a QA login.", "teach_model")
    if chosen is None:
        return
    results, model_hash = chosen
    current = results.current_tolerance(model_hash, with_maps=True)
    st.caption("Dismissed false alarms widen the tolerance where they were, and only there: bounded by what they "
               "showed plus a margin and by a ceiling, never at a confirmed defect's place, refused for regions too "
               "large to be a place. Each version is previewed on the last stored boards and can be rolled back.")
    if current is not None:
        st.subheader(f"In force: version {current.version} by {current.author} ({current.reason})")
        if current.figure:
            st.image(current.figure, caption="Where the tolerance is wider (over the reference board)", width="stretch")
        st.write(plain(current.summary.get("preview_text", "")))
    bundle = _bundle(results, model_hash)
    st.subheader("Teach from the latest dismissals")
    _waiting(results, model_hash, current)
    if bundle is None:
        st.warning("The runner recorded no bundle folder for this model on this PC, so it cannot be judged here: "
                   "teach with `inspector learn --model BUNDLE --db ...`.")
    else:
        _teach_form(results, bundle)
    history = _history(results, model_hash)
    if history and bundle is not None:
        _rollback_form(results, bundle, history)
