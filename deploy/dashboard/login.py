"""The login form; the only thing shown until a user is authenticated."""

from __future__ import annotations

import streamlit as st

from deploy.dashboard.context import USER_KEY, DashboardSettings, users


def login_page(settings: DashboardSettings) -> None:
    st.title("board-inspector")
    st.caption("Log in to review flagged boards (operator) or to change thresholds (QA).")
    with st.form("login"):
        name = st.text_input("User", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    user = users(settings).authenticate(name, password)
    if user is None:
        st.error("Unknown user or wrong password.")
        return
    st.session_state[USER_KEY] = user
    st.rerun()


def logout() -> None:
    st.session_state.pop(USER_KEY, None)
    st.rerun()
