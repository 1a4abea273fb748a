"""Who may do what: the two roles of the users file, checked in the function that writes.

The users file is the dashboard's (deploy/dashboard/auth.py adds passwords and logins on top): a
script that reviews or teaches (`inspector review`, `inspector learn`) is named there with its role,
so the same rule holds whether a person clicks or a script calls.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import ConfigError, InspectorError

ROLES = ("operator", "qa")
ROLE_QA = "qa"
ROLE_OPERATOR = "operator"


class AccessDenied(InspectorError, PermissionError):
    """The user's role does not allow the action (e.g. a threshold change without QA)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_qa(self) -> bool:
        return self.role == ROLE_QA


def require_role(user: User | None, role: str, action: str) -> User:
    """Raise AccessDenied unless `user` holds `role` (QA may do everything an operator may)."""
    if user is None:
        raise AccessDenied(f"{action}: login required")
    if role == ROLE_OPERATOR and user.role in ROLES:
        return user
    if user.role != role:
        raise AccessDenied(f"{action}: user {user.name!r} has role {user.role!r}, needs {role!r}")
    return user


def read_users_table(path: str | Path) -> dict[str, dict[str, Any]]:
    """The `[users.<name>]` tables of a users file, each with a known role (ConfigError naming the
    file and the user otherwise); the password hashes are the dashboard's to check."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: users file not found")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse users file ({exc})") from exc
    users = data.get("users")
    if not isinstance(users, dict) or not users:
        raise ConfigError(f"{path}: no [users.<name>] tables found")
    for name, entry in users.items():
        where = f"{path}: user {name!r}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with role and password")
        unknown = sorted(set(entry) - {"role", "password"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if entry.get("role") not in ROLES:
            raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}, got {entry.get('role')!r}")
    return users


def named_user(users_file: str | Path, name: str) -> User:
    """A script's user as the users file names it (no password: the script runs where the store's
    credentials already are; the role still decides what it may do)."""
    users = read_users_table(users_file)
    if name not in users:
        raise AccessDenied(f"{users_file}: no user {name!r}; add it with `inspector users add {name} --role "
                           f"operator|qa --users {users_file}`")
    return User(name=name, role=str(users[name]["role"]))
