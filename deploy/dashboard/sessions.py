"""Server-side login sessions, found by an HttpOnly cookie that holds only a random id.

A login creates a row in this in-memory table; the browser gets the row's random id in the
`board_inspector_session` cookie (HttpOnly, SameSite=Strict, Path=/; Secure over TLS), set by the
login route in web.py, never by page code and never in the address. Every page run and every
auto-refresh looks the id up again here, so a session ends at once everywhere when:
- it has been idle for `idle_s` (default 30 minutes);
- it is older than `lifetime_s` (default 12 hours, a shift);
- the user logs out (the row is deleted; the cookie left in the browser opens nothing);
- the user's password changes or the user leaves the users file;
- the dashboard process restarts (the table lives only in memory).
The table holds the SHA-256 of each id, not the id, and at most `max_sessions` rows (the least
recently used go first).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from deploy.dashboard.auth import User, UsersFile
from inspector.errors import ConfigError

COOKIE = "board_inspector_session"


@dataclass
class _Session:
    user: str
    password_hash: str
    created: float
    last_seen: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


class SessionTable:
    def __init__(self, lifetime_s: float = 12 * 3600.0, idle_s: float = 30 * 60.0, max_sessions: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for label, value in (("lifetime", lifetime_s), ("idle timeout", idle_s)):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"session {label} must be a positive number of seconds, got {value}")
        self.lifetime_s, self.idle_s, self.max_sessions, self.clock = lifetime_s, idle_s, max_sessions, clock
        self._rows: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, user: User, users: UsersFile) -> str:
        """A new session for `user`; returns the id for the cookie (never stored here)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._rows[_key(session_id)] = _Session(user.name, users.hashes[user.name], now, now)
            while len(self._rows) > self.max_sessions:
                self._rows.popitem(last=False)
        return session_id

    def user_for(self, session_id: str | None, users: UsersFile, *, touch: bool = True) -> User | None:
        """The session's user, re-read from the users file, or None (unknown, expired, idle,
        logged out, password changed, user removed). `touch` counts this as activity."""
        if not session_id or len(session_id) > 200:
            return None
        key, now = _key(session_id), self.clock()
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                return None
            if (now - row.created >= self.lifetime_s or now - row.last_seen >= self.idle_s
                    or users.hashes.get(row.user) != row.password_hash):
                del self._rows[key]
                return None
            if touch:
                row.last_seen = now
                self._rows.move_to_end(key)
            return User(name=row.user, role=users.roles[row.user])

    def end(self, session_id: str | None) -> None:
        """Log out: the row goes, so every tab and every copy of the cookie is logged out."""
        if session_id:
            with self._lock:
                self._rows.pop(_key(session_id), None)

    def end_user(self, name: str) -> int:
        with self._lock:
            gone = [key for key, row in self._rows.items() if row.user == name]
            for key in gone:
                del self._rows[key]
        return len(gone)

    def __len__(self) -> int:
        return len(self._rows)


_TABLES: dict[tuple[float, float], SessionTable] = {}
_TABLES_LOCK = threading.Lock()


def table(lifetime_s: float, idle_s: float) -> SessionTable:
    """The one table of this server process (the login route and the pages share it)."""
    with _TABLES_LOCK:
        found = _TABLES.get((lifetime_s, idle_s))
        if found is None:
            found = _TABLES[(lifetime_s, idle_s)] = SessionTable(lifetime_s, idle_s)
        return found
