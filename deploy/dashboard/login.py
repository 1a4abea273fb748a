"""What a browser without a live session sees: a link to the login form (web.py serves it).

The gate in web.py already sends page loads without a session to the form; this is for a page
that stays open while its session ends (log out in another tab, idle timeout, end of shift).
"""

from __future__ import annotations

import streamlit as st

from deploy.dashboard.context import DashboardSettings, end_session
from deploy.dashboard.web import LOGIN_PATH


def login_page() -> None:
    st.title("board-inspector")
    st.info("You are not logged in (logged out, idle for too long, or the shift's login ended).")
    # A same-tab link to the form; a constant, nothing from the request goes into this HTML.
    st.markdown(f'<a href="{LOGIN_PATH}" target="_self" id="login-link">Log in</a>', unsafe_allow_html=True)


def logout(settings: DashboardSettings) -> None:
    end_session(settings)
    st.rerun()
