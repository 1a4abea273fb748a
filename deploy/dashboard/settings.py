"""The deployment's dashboard settings, read from the environment `inspector dashboard` sets
(deploy/dashboard/launch.py), and the per-process objects built from them: the users file (re-read
when it changes) and the session table. Used by the pages (context.py) and the login routes
(web.py) alike, so it does not import Streamlit.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from deploy.dashboard import sessions
from deploy.dashboard.auth import UsersFile, load_users
from deploy.dashboard.launch import (
    ENV_DATA_DIR,
    ENV_DB_URL,
    ENV_IDLE_MINUTES,
    ENV_REFRESH_SECONDS,
    ENV_SESSION_HOURS,
    ENV_USERS_FILE,
)
from inspector.errors import ConfigError


@dataclass(frozen=True)
class DashboardSettings:
    db_url: str
    data_dir: Path
    users_file: Path
    refresh_seconds: float
    session_hours: float = 12.0
    idle_minutes: float = 30.0

    def resolve(self, stored_path: str) -> Path:
        """Stored file paths are absolute or relative to the data directory."""
        path = Path(stored_path)
        return path if path.is_absolute() else self.data_dir / path


def _positive(name: str, default: str, unit: str) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"dashboard: {name} must be a number of {unit}") from exc
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"dashboard: {name} must be a positive number of {unit}, got {value}")
    return value


def settings_from_env() -> DashboardSettings:
    users = os.environ.get(ENV_USERS_FILE, "")
    if not users:
        raise ConfigError(f"dashboard: {ENV_USERS_FILE} is not set; start the dashboard with "
                          "`inspector dashboard --users FILE` (see docs/deployment.md)")
    return DashboardSettings(db_url=os.environ.get(ENV_DB_URL, ""), data_dir=Path(os.environ.get(ENV_DATA_DIR, "data")),
                             users_file=Path(users), refresh_seconds=_positive(ENV_REFRESH_SECONDS, "2.0", "seconds"),
                             session_hours=_positive(ENV_SESSION_HOURS, "12", "hours"),
                             idle_minutes=_positive(ENV_IDLE_MINUTES, "30", "minutes"))


_USERS: dict[str, tuple[float, UsersFile]] = {}
_USERS_LOCK = threading.Lock()


def users(settings: DashboardSettings) -> UsersFile:
    """The users file, re-read when its mtime changes (an edit takes effect without a restart)."""
    try:
        mtime = settings.users_file.stat().st_mtime
    except OSError as exc:
        raise ConfigError(f"{settings.users_file}: users file not readable ({exc.strerror})") from exc
    key = str(settings.users_file)
    with _USERS_LOCK:
        cached = _USERS.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    loaded = load_users(settings.users_file)
    with _USERS_LOCK:
        _USERS[key] = (mtime, loaded)
    return loaded


def session_table(settings: DashboardSettings) -> sessions.SessionTable:
    return sessions.table(settings.session_hours * 3600.0, settings.idle_minutes * 60.0)
