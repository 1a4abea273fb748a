"""What every page needs: the deployment's settings, the open store, the logged-in user.

Settings arrive in environment variables set by `inspector dashboard` (inspector/dashboard.py);
the store is opened once per server process and shared by all browser sessions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from deploy.auth import User, UsersFile, load_users
from inspector.dashboard import ENV_DATA_DIR, ENV_DB_URL, ENV_REFRESH_SECONDS, ENV_USERS_FILE
from inspector.errors import ConfigError
from inspector.store import Store, open_store

USER_KEY = "user"
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
    return DashboardSettings(db_url=os.environ.get(ENV_DB_URL, ""), data_dir=Path(data_dir),
                             users_file=Path(users), refresh_seconds=refresh)


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


def current_user() -> User | None:
    return st.session_state.get(USER_KEY)


def open_board(inspection_id: int) -> None:
    """Show one board on the detail page (also reachable as ?board=<id>)."""
    st.session_state[BOARD_KEY] = int(inspection_id)
    st.switch_page(PAGE_FILES["board"])


def go_to(page: str) -> None:
    st.switch_page(PAGE_FILES[page])
