"""`inspector users add|passwd|remove|list --users FILE`: manage the dashboard's users file.

Passwords are asked twice on the terminal, or read from stdin (one line) with `--password-stdin`
for scripts; never from the command line, where other users and the shell history see them. The
file is replaced atomically with owner-only permissions (0600), keeping its owner when root edits
it for the dashboard's service user. A running dashboard re-reads the file: a changed password or a
removed user ends that user's sessions at the next page run.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TextIO

from deploy.dashboard.auth import UsersFile, hash_password, load_users, write_users
from inspector.errors import ConfigError
from inspector.review.roles import ROLES

ACTIONS = ("add", "passwd", "remove", "list")
MIN_PASSWORD_LENGTH = 8


def read_password(password_stdin: bool, stdin: TextIO | None = None) -> str:
    if password_stdin:
        line = (stdin or sys.stdin).readline()
        password = line[:-1] if line.endswith("\n") else line
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _valid_name(name: str | None) -> str:
    if not name or name != name.strip() or len(name) > 64 or any(ord(c) < 33 for c in name):
        raise ConfigError(f"user name {name!r}: 1-64 characters, no spaces or control characters")
    return name


def _save(users: UsersFile) -> None:
    try:
        owner = users.path.stat()
    except FileNotFoundError:
        owner = None
    write_users(users)
    if owner is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chown(users.path, owner.st_uid, owner.st_gid)  # root edits the service user's file


def manage(action: str, users_file: Path, name: str | None = None, *, role: str | None = None,
           password_stdin: bool = False, stdin: TextIO | None = None) -> str:
    """Run one users command; returns what to print."""
    if action not in ACTIONS:
        raise ConfigError(f"users: unknown action {action!r} (one of {', '.join(ACTIONS)})")
    path = Path(users_file)
    if action == "list":
        return _list(path)
    name = _valid_name(name)
    if action == "add":
        return _add(path, name, role, password_stdin, stdin)
    users = load_users(path)
    if name not in users.hashes:
        raise ConfigError(f"{path}: no user {name!r}")
    if action == "passwd":
        return _passwd(users, path, name, role, password_stdin, stdin)
    return _remove(users, path, name)


def _list(path: Path) -> str:
    users = load_users(path)
    return "\n".join(f"{user}: {users.roles[user]}" for user in sorted(users.roles))


def _add(path: Path, name: str, role: str | None, password_stdin: bool, stdin: TextIO | None) -> str:
    if role not in ROLES:
        raise ConfigError(f"users add: --role must be one of {', '.join(ROLES)}, got {role!r}")
    # A missing or empty file starts a new one (an empty file made by `install -o inspector`
    # gives the new file its owner).
    fresh = not path.exists() or path.stat().st_size == 0
    users = UsersFile(path=path, hashes={}, roles={}) if fresh else load_users(path)
    if name in users.hashes:
        raise ConfigError(f"{path}: user {name!r} exists; use `inspector users passwd` to change the password")
    users.hashes[name], users.roles[name] = hash_password(read_password(password_stdin, stdin)), role
    _save(users)
    return f"added {name} ({role}) to {path}"


def _passwd(users: UsersFile, path: Path, name: str, role: str | None, password_stdin: bool,
            stdin: TextIO | None) -> str:
    users.hashes[name] = hash_password(read_password(password_stdin, stdin))
    if role is not None:
        if role not in ROLES:
            raise ConfigError(f"users passwd: --role must be one of {', '.join(ROLES)}, got {role!r}")
        users.roles[name] = role
    _save(users)
    return f"changed the password of {name} in {path} (their open sessions end)"


def _remove(users: UsersFile, path: Path, name: str) -> str:
    if len(users.hashes) == 1:
        raise ConfigError(f"{path}: {name!r} is the only user; add another before removing it")
    del users.hashes[name], users.roles[name]
    _save(users)
    return f"removed {name} from {path} (their open sessions end)"
