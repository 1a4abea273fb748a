"""What every page needs: the deployment's settings, the open store, the logged-in user.

Settings arrive in environment variables set by `inspector dashboard` (deploy/dashboard/launch.py);
the store is opened once per server process and shared by all browser sessions, and the stations'
data directories it records are where the pages may read pictures from, besides the data directory.
The login is a server-side session found by its HttpOnly cookie (sessions.py, set by web.py's login
route): nothing in the page address logs anybody in.
"""

from __future__ import annotations

import logging

import streamlit as st

from deploy.dashboard import images
from deploy.dashboard.auth import User
from deploy.dashboard.sessions import COOKIE
from deploy.dashboard.settings import DashboardSettings, session_table, settings_from_env, users
from inspector.errors import InspectorError
from inspector.store import Store, open_store
from inspector.store.dashboard_queries import latest_model_hash

USER_KEY = "user"
LEGACY_SESSION_PARAM = "session"  # the old login-in-the-address; ignored and removed
BOARD_KEY = "board_id"
# Page scripts, relative to app.py (st.switch_page and AppTest.switch_page take these paths).
PAGE_FILES = {"queue": "views/queue.py", "board": "views/board.py", "overview": "views/overview.py",
              "qa": "views/qa.py", "teach": "views/teach.py"}
FLASH_KEY = "flash"  # one message carried across a page switch

__all__ = ["BOARD_KEY", "FLASH_KEY", "PAGE_FILES", "USER_KEY", "DashboardSettings", "current_user", "end_session",
           "go_to", "open_board", "plain", "qa_model", "restore_session", "session_id_from_request", "session_user",
           "settings_from_env", "show_failure", "store", "users"]


@st.cache_resource(show_spinner=False)
def _store(db_url: str, data_dir: str) -> Store:
    return open_store(db_url, data_dir)


def store(settings: DashboardSettings) -> Store:
    results = _store(settings.db_url, str(settings.data_dir))
    # Each station's feed keeps its pictures in the data directory the store records for it, which
    # need not be this dashboard's: the pages' picture reads may come from there too (never from
    # anywhere else; deploy/dashboard/images.py). Set on every call: a cheap dict entry, always
    # naming the store this data directory is shown with.
    images.use_station_folders(settings.data_dir, lambda: [station.data_dir for station in results.stations()])
    return results


def session_id_from_request() -> str | None:
    """The session cookie the browser sent when it opened this page's connection."""
    value = st.context.cookies.get(COOKIE)
    return value if isinstance(value, str) else None


def restore_session(settings: DashboardSettings) -> User | None:
    """The logged-in user for this run, re-read from the users file; None shows the login link.

    Called on every run of every page and of every auto-refresh: a session that went idle,
    expired, was logged out (in any tab) or whose user changed password ends here at once.
    """
    if LEGACY_SESSION_PARAM in st.query_params:
        del st.query_params[LEGACY_SESSION_PARAM]
    return session_user(settings, touch=True)


def session_user(settings: DashboardSettings, *, touch: bool) -> User | None:
    """The session's user now. Auto-refreshes pass `touch=False`: an unattended open page does
    not keep a login alive past the idle timeout; a click does."""
    user = session_table(settings).user_for(session_id_from_request(), users(settings), touch=touch)
    if user is None:
        st.session_state.pop(USER_KEY, None)
        return None
    st.session_state[USER_KEY] = user
    return user


def end_session(settings: DashboardSettings) -> None:
    """Log out: the server forgets the session, so every tab holding its cookie is logged out."""
    session_table(settings).end(session_id_from_request())
    st.session_state.pop(USER_KEY, None)


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:=")


def plain(text: str) -> str:
    """`text` escaped for the Markdown that st.error/st.info render: names and paths from the
    inbox or the store show as typed, never as links or formatting."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in str(text))


def show_failure(exc: BaseException) -> None:
    """A failed page or refresh as one plain line: a store outage says so, anything else points to
    the server log (never a traceback or SQL in the browser)."""
    if isinstance(exc, InspectorError):
        st.error(plain(str(exc)))
    else:
        logging.getLogger("board_inspector.dashboard").error("dashboard page failed", exc_info=exc)
        st.error("The page failed; the details are in the dashboard's log.")


def current_user() -> User | None:
    return st.session_state.get(USER_KEY)


def open_board(inspection_id: int) -> None:
    """Show one board on the detail page, at the shareable address ?board=<id> (it carries no login)."""
    st.session_state[BOARD_KEY] = int(inspection_id)
    st.switch_page(PAGE_FILES["board"], query_params={"board": str(int(inspection_id))})


def qa_model(settings: DashboardSettings, denied: str, key: str) -> tuple[Store, str] | None:
    """The QA pages' start: a QA login (else `denied` is shown), the store, and the model chosen
    (the newest by default); None when the page has nothing to show."""
    user = current_user()
    if user is None or not user.is_qa:
        st.error(denied)
        return None
    results = store(settings)
    models = [m.hash for m in results.models()]
    if not models:
        st.info("No model has inspected a board yet.")
        return None
    newest = latest_model_hash(results)
    model_hash = st.selectbox("Model", models, index=models.index(newest) if newest in models else len(models) - 1,
                              format_func=lambda h: h[:16], key=key)
    return results, model_hash


def go_to(page: str) -> None:
    st.switch_page(PAGE_FILES[page])
