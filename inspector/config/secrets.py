"""Passwords kept out of logs and argv: masking, the owner-only check of a secret's file, and where the
store's URL is read from."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Protocol

from inspector.errors import ConfigError

DB_URL_ENV = "BOARD_INSPECTOR_DB_URL"
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<password>[^\s@/]*)@")
_SECRET_PARAMS = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api_key)=([^&\s'\"]+)")


class StoreSetting(Protocol):
    """Where a store's URL may be set (`RunnerConfig`; the dashboard's table builds one)."""

    db_url: str
    db_url_file: str


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL (`scheme://user:***@host`) and `password=...` masked."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=***", text)


def has_secret(text: str) -> bool:
    return mask_secrets(text) != text


def one_line(text: str, limit: int) -> str:
    """`text` masked (mask_secrets), its whitespace runs as single spaces, cut to `limit` characters ("...")."""
    flat = " ".join(mask_secrets(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_private(path: str | Path, mode: int, setting: str) -> None:
    """Refuses a secret's file (`path`, its `st_mode`) that the group or others may use: only the service
    may read it. `setting` names the option that points to the file."""
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{setting} {path}: readable by other users; make it readable by the service only "
                          f"(chmod 600 {path})")


def resolve_db_url(runner: StoreSetting, environ: dict[str, str] | None = None) -> str:
    """The store URL: `BOARD_INSPECTOR_DB_URL`, else the first line of `db_url_file`, else `db_url`."""
    env = os.environ if environ is None else environ
    if env.get(DB_URL_ENV, "").strip():
        return env[DB_URL_ENV].strip()
    if runner.db_url_file:
        path = Path(runner.db_url_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"runner.db_url_file {path}: cannot read ({exc.strerror or exc})") from exc
        check_private(path, mode, "runner.db_url_file")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ConfigError(f"runner.db_url_file {path}: empty")
        return lines[0]
    return runner.db_url
