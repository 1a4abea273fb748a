"""What every page needs: the deployment's settings, the open store, the logged-in user.

Settings arrive in environment variables set by `inspector dashboard` (deploy/dashboard/launch.py);
the store is opened once per server process and shared by all browser sessions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from deploy.dashboard.auth import SessionTokens, User, UsersFile, load_users
from deploy.dashboard.launch import ENV_DATA_DIR, ENV_DB_URL, ENV_REFRESH_SECONDS, ENV_SESSION_HOURS, ENV_USERS_FILE
from inspector.errors import ConfigError
from inspector.store import Store, open_store

USER_KEY = "user"
TOKEN_KEY = "session_token"
SESSION_PARAM = "session"  # the page address carries the login token, so a reload keeps the login
BOARD_KEY = "board_id"
# Page scripts, relative to app.py (st.switch_page and AppTest.switch_page take these paths).
PAGE_FILES = {"queue": "views/queue.py", "board": "views/board.py", "overview": "views/overview.py",
              "qa": "views/qa.py"}
FLASH_KEY = "flash"  # one message carried across a page switch


@dataclass(frozen=True)
class DashboardSettings:
    db_url: str
    data_dir: Path
    users_file: Path
    refresh_seconds: float
    session_hours: float = 12.0

    def resolve(self, stored_path: str) -> Path:
        """Stored file paths are absolute or relative to the data directory."""
        path = Path(stored_path)
        return path if path.is_absolute() else self.data_dir / path


def settings_from_env() -> DashboardSettings:
    users = os.environ.get(ENV_USERS_FILE, "")
    if not users:
        raise ConfigError(f"dashboard: {ENV_USERS_FILE} is not set; start the dashboard with "
                          "`inspector dashboard --users FILE` (see docs/deployment.md)")
    data_dir = os.environ.get(ENV_DATA_DIR, "data")
    try:
        refresh = float(os.environ.get(ENV_REFRESH_SECONDS, "2.0"))
    except ValueError as exc:
        raise ConfigError(f"dashboard: {ENV_REFRESH_SECONDS} must be a number of seconds") from exc
    try:
        session_hours = float(os.environ.get(ENV_SESSION_HOURS, "12"))
    except ValueError as exc:
        raise ConfigError(f"dashboard: {ENV_SESSION_HOURS} must be a number of hours") from exc
    if not (math.isfinite(session_hours) and session_hours > 0):
        raise ConfigError(f"dashboard: {ENV_SESSION_HOURS} must be a positive number of hours, got {session_hours}")
    return DashboardSettings(db_url=os.environ.get(ENV_DB_URL, ""), data_dir=Path(data_dir),
                             users_file=Path(users), refresh_seconds=refresh, session_hours=session_hours)


@st.cache_resource(show_spinner=False)
def _store(db_url: str, data_dir: str) -> Store:
    return open_store(db_url, data_dir)


def store(settings: DashboardSettings) -> Store:
    return _store(settings.db_url, str(settings.data_dir))


@st.cache_resource(show_spinner=False)
def _users(path: str, mtime: float) -> UsersFile:
    return load_users(path)


def users(settings: DashboardSettings) -> UsersFile:
    # Keyed on the file's mtime: an edited users file takes effect without a restart.
    try:
        mtime = settings.users_file.stat().st_mtime
    except OSError as exc:
        raise ConfigError(f"{settings.users_file}: users file not readable ({exc.strerror})") from exc
    return _users(str(settings.users_file), mtime)


@st.cache_resource(show_spinner=False)
def _tokens(session_hours: float) -> SessionTokens:
    return SessionTokens(lifetime_s=session_hours * 3600.0)


def tokens(settings: DashboardSettings) -> SessionTokens:
    """One signer per server process: every browser session's tokens check against it."""
    return _tokens(settings.session_hours)


def client_address() -> str:
    """The browser's address as the server sees it ("" on localhost, the proxy's behind one)."""
    address = st.context.ip_address
    return address if isinstance(address, str) else ""  # None on localhost (and a stand-in under AppTest)


def restore_session(settings: DashboardSettings) -> User | None:
    """The logged-in user for this run, re-read from the users file; None shows the login form.

    A reload starts a new Streamlit session with empty state: the token in the address logs the
    user back in. A user removed from the users file, or whose password changed, is logged out.
    """
    token = st.session_state.get(TOKEN_KEY) or st.query_params.get(SESSION_PARAM)
    user = tokens(settings).user_for(token, users(settings), client_address()) if token else None
    if user is None:
        for key in (USER_KEY, TOKEN_KEY):
            st.session_state.pop(key, None)
        if SESSION_PARAM in st.query_params:
            del st.query_params[SESSION_PARAM]
        return None
    st.session_state[USER_KEY], st.session_state[TOKEN_KEY] = user, token
    # Page switches clear the address's parameters: put the token back on every run.
    if st.query_params.get(SESSION_PARAM) != token:
        st.query_params[SESSION_PARAM] = str(token)
    return user


def current_user() -> User | None:
    return st.session_state.get(USER_KEY)


def open_board(inspection_id: int) -> None:
    """Show one board on the detail page (also reachable as ?board=<id>)."""
    st.session_state[BOARD_KEY] = int(inspection_id)
    st.switch_page(PAGE_FILES["board"])


def go_to(page: str) -> None:
    st.switch_page(PAGE_FILES[page])
