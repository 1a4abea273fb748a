"""The login form; the only thing shown until a user is authenticated."""

from __future__ import annotations

import streamlit as st

from deploy.dashboard.auth import LoginThrottle
from deploy.dashboard.context import SESSION_PARAM, TOKEN_KEY, USER_KEY, DashboardSettings, client_address, tokens, users


@st.cache_resource(show_spinner=False)
def _throttle() -> LoginThrottle:
    return LoginThrottle()


def login_page(settings: DashboardSettings) -> None:
    st.title("board-inspector")
    st.caption("Log in to review flagged boards (operator) or to change thresholds (QA).")
    with st.form("login"):
        name = st.text_input("User", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    name = name.strip()
    wait = _throttle().blocked_for(name)
    if wait > 0:
        st.error(f"Too many wrong passwords for {name!r}; try again in {wait:.0f} s.")
        return
    user = users(settings).authenticate(name, password)
    if user is None:
        _throttle().failed(name)
        st.error("Unknown user or wrong password.")
        return
    _throttle().succeeded(name)
    token = tokens(settings).issue(user, users(settings), client_address())
    st.session_state[USER_KEY], st.session_state[TOKEN_KEY] = user, token
    st.query_params[SESSION_PARAM] = token
    st.rerun()


def logout(settings: DashboardSettings) -> None:
    token = st.session_state.pop(TOKEN_KEY, None)
    if token:
        tokens(settings).revoke(token)  # the address may still be in the browser's history
    st.session_state.pop(USER_KEY, None)
    st.query_params.clear()
    st.rerun()
