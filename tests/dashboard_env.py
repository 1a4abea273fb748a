"""The dashboard under Streamlit's AppTest: its users file, its environment and a logged-in "browser"
(shared by tests/integration/test_dashboard_apptest.py and test_teach_page.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from deploy.dashboard import context
from deploy.dashboard.auth import hash_password
from deploy.dashboard.launch import ENV_DATA_DIR, ENV_DB_URL, ENV_IDLE_MINUTES, ENV_REFRESH_SECONDS, ENV_USERS_FILE
from deploy.dashboard.settings import session_table, settings_from_env, users
from tests.conftest import REPO_ROOT

APP = REPO_ROOT / "deploy" / "dashboard" / "app.py"
PASSWORDS = {"olga": "olga-pass", "quinn": "quinn-pass"}
ROLES = {"olga": "operator", "quinn": "qa"}

# The session cookie the next AppTest "browser" sends under "cookie" (None: a fresh browser).
Browser = dict[str, str | None]


def write_users(path: Path, *names: str) -> Path:
    """A users file with these of the test users (olga the operator, quinn from QA) and their passwords."""
    path.write_text("".join(f'[users.{name}]\nrole = "{ROLES[name]}"\npassword = "{hash_password(PASSWORDS[name])}"\n'
                            for name in names))
    return path


def dashboard_env(monkeypatch: pytest.MonkeyPatch, *, db_url: str, data_dir: Path, users_file: Path,
                  idle_minutes: str) -> Browser:
    """The environment `inspector dashboard` gives the app, and the browser whose cookie the app reads."""
    for name, value in ((ENV_DB_URL, db_url), (ENV_DATA_DIR, str(data_dir)), (ENV_USERS_FILE, str(users_file)),
                        (ENV_REFRESH_SECONDS, "0.5"), (ENV_IDLE_MINUTES, idle_minutes)):
        monkeypatch.setenv(name, value)
    browser: Browser = {"cookie": None}
    # AppTest cannot send cookies: the page code's one cookie reader answers with this "browser's" cookie.
    monkeypatch.setattr(context, "session_id_from_request", lambda: browser["cookie"])
    return browser


def log_in(browser: Browser, name: str) -> str:
    """What the login route does (tests/unit/deploy/test_logins.py drives it): a session, its cookie."""
    settings = settings_from_env()
    user = users(settings).authenticate(name, PASSWORDS[name])
    assert user is not None
    cookie = session_table(settings).issue(user, users(settings))
    browser["cookie"] = cookie
    return cookie


def logged_in(name: str, browser: Browser, timeout: float = 60) -> AppTest:
    """The app run once in `browser` after `name` logged in there."""
    log_in(browser, name)
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at
