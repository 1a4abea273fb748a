"""board-inspector dashboard (Streamlit entry point); start it with `inspector dashboard`.

Nothing but the login form is shown until a user is authenticated; the QA page is only listed
for QA users (and the writes behind it check the role again, see actions.py).
"""

from __future__ import annotations

import streamlit as st

from deploy.dashboard.context import FLASH_KEY, PAGE_FILES, plain, restore_session, settings_from_env, show_failure, users
from deploy.dashboard.login import login_page, logout
from inspector.errors import InspectorError

st.set_page_config(page_title="board-inspector", layout="wide")

try:
    settings = settings_from_env()
    users(settings)  # a broken users file is reported here, not as a failed login
    user = restore_session(settings)
except InspectorError as exc:
    st.error(f"The dashboard cannot start: {plain(str(exc))}")
    st.stop()

if user is None:
    login_page()
    st.stop()

# File pages (views/*.py) rather than callables: AppTest can switch to them by path.
pages = [
    st.Page(PAGE_FILES["queue"], title="Flagged boards", url_path="queue", default=True),
    st.Page(PAGE_FILES["board"], title="Board review", url_path="board"),
    st.Page(PAGE_FILES["overview"], title="Line overview", url_path="overview"),
]
if user.is_qa:
    pages.append(st.Page(PAGE_FILES["qa"], title="Thresholds (QA)", url_path="thresholds"))
    pages.append(st.Page(PAGE_FILES["teach"], title="Teaching (QA)", url_path="teaching"))

with st.sidebar:
    st.text(f"Logged in as {user.name} ({user.role})")
    if st.button("Log out", key="logout"):
        logout(settings)

navigation = st.navigation(pages)
flash = st.session_state.pop(FLASH_KEY, None)
if flash:
    st.success(flash)  # our own words (board number, defect type from a fixed list)
try:
    navigation.run()
except Exception as exc:  # noqa: BLE001 - a store outage or a fault: one plain line, never a traceback
    show_failure(exc)
