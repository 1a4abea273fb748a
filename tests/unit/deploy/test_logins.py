"""Logins without Streamlit: scrypt cost and upgrade, the throttle, server-side sessions, the login
routes and page gate (driven as plain ASGI), `inspector users`, and the refusal of demo logins."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from deploy.dashboard import auth, sessions, settings, web
from deploy.dashboard.launch import ENV_DATA_DIR, ENV_IDLE_MINUTES, ENV_USERS_FILE, streamlit_command
from inspector.config import DashboardConfig
from inspector.errors import ConfigError
from tests.conftest import REPO_ROOT

OLD_DEMO_OPERATOR = "scrypt$16384$8$1$8c/evHhaqmJqPfTNV52Kag==$QWhRhrxt43ErOh/txK9cUd+nZoTMOv0Rst5oByFvN/Q="


@pytest.fixture()
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "SCRYPT_N", 2**10)


def _write(path: Path, users: dict[str, tuple[str, str]]) -> Path:
    path.write_text("".join(f'[users.{name}]\nrole = "{role}"\npassword = "{encoded}"\n'
                            for name, (role, encoded) in users.items()))
    return path


def test_new_hashes_use_current_scrypt_guidance_and_old_ones_upgrade_at_login(tmp_path: Path) -> None:
    encoded = auth.hash_password("s3cret-pass")
    assert encoded.startswith("scrypt$131072$8$1$") and not auth.needs_rehash(encoded)
    assert auth.verify_password("s3cret-pass", encoded) and not auth.verify_password("s3cret-Pass", encoded)
    path = _write(tmp_path / "users.toml", {"operator": ("operator", OLD_DEMO_OPERATOR)})
    users = auth.load_users(path)
    assert users.authenticate("operator", "wrong") is None
    assert auth.load_users(path).hashes["operator"] == OLD_DEMO_OPERATOR  # a failure changes nothing
    assert users.authenticate("operator", "demo-operator") == auth.User("operator", "operator")
    upgraded = auth.load_users(path).hashes["operator"]
    assert upgraded.startswith("scrypt$131072$") and auth.verify_password("demo-operator", upgraded)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_hash_too_costly_to_check_is_refused_when_the_file_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "users.toml", {"a": ("qa", "scrypt$1048576$8$1$AAAA$AAAA")})
    with pytest.raises(ConfigError, match="needs more than 512 MiB"):
        auth.load_users(path)


def test_throttle_counts_per_client_and_per_name_and_forgets() -> None:
    now = [1000.0]
    throttle = auth.LoginThrottle(client_failures=3, name_failures=5, window_s=60, lockout_s=30,
                                  max_entries=50, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.blocked_for("qa", "10.0.0.1") == 0.0
        throttle.failed("qa", "10.0.0.1")
    assert throttle.blocked_for("qa", "10.0.0.1") == pytest.approx(30.0)
    assert throttle.blocked_for("olga", "10.0.0.1") == pytest.approx(30.0)  # that client, any name
    assert throttle.blocked_for("qa", "10.0.0.2") == 0.0  # one client cannot lock the name out
    throttle.failed("qa", "10.0.0.2")
    throttle.failed("qa", "10.0.0.3")
    assert throttle.blocked_for("qa", "10.0.0.4") == pytest.approx(30.0)  # many clients guessing one name
    now[0] += 31
    assert throttle.blocked_for("qa", "10.0.0.1") == 0.0  # never a permanent lock-out
    for n in range(1000):
        throttle.failed(f"name-{n}", f"10.1.{n // 256}.{n % 256}")
    assert len(throttle) <= 100  # bounded: at most max_entries per table


def test_sessions_end_on_idle_age_logout_password_change_and_removal(tmp_path: Path, fast_scrypt: None) -> None:
    now = [0.0]
    path = _write(tmp_path / "users.toml", {"olga": ("operator", auth.hash_password("olga-pass"))})
    users = auth.load_users(path)
    table = sessions.SessionTable(lifetime_s=3600, idle_s=600, clock=lambda: now[0])
    olga = auth.User("olga", "operator")
    sid = table.issue(olga, users)
    assert sid not in repr(table._rows) and len(sid) >= 40  # only a digest is kept
    for _ in range(5):  # used every 9 minutes: stays
        now[0] += 540
        assert table.user_for(sid, users) == olga
    now[0] += 540
    assert table.user_for(sid, users, touch=False) == olga
    now[0] += 61  # idle > 10 minutes (the untouched check above did not count)
    assert table.user_for(sid, users) is None
    sid = table.issue(olga, users)
    for _ in range(8):  # 4000 s > the 3600 s lifetime
        now[0] += 500
        table.user_for(sid, users)
    assert table.user_for(sid, users) is None  # past the absolute lifetime despite activity
    sid = table.issue(olga, users)
    table.end(sid)
    assert table.user_for(sid, users) is None
    sid = table.issue(olga, users)
    changed = auth.UsersFile(path, {"olga": auth.hash_password("new-pass")}, {"olga": "operator"})
    assert table.user_for(sid, changed) is None
    sid = table.issue(olga, users)
    assert table.user_for(sid, auth.UsersFile(path, {}, {})) is None
    for bad in ("", None, "x" * 500, "forged"):
        assert table.user_for(bad, users) is None


def test_session_table_is_bounded(tmp_path: Path, fast_scrypt: None) -> None:
    users = auth.load_users(_write(tmp_path / "u.toml", {"o": ("operator", auth.hash_password("pw"))}))
    table = sessions.SessionTable(max_sessions=10)
    first = table.issue(auth.User("o", "operator"), users)
    for _ in range(20):
        table.issue(auth.User("o", "operator"), users)
    assert len(table) == 10 and table.user_for(first, users) is None


# --- the login routes and the gate, driven as a plain ASGI app --------------------------------

def _call(app: Any, method: str, path: str, *, query: str = "", body: bytes = b"",
          headers: dict[str, str] | None = None, client: str = "127.0.0.1") -> tuple[int, dict[str, list[str]], bytes]:
    sent: list[dict] = []
    request_headers = [(k.lower().encode(), v.encode()) for k, v in {"host": "testserver", **(headers or {})}.items()]
    scope = {"type": "http", "method": method, "path": path, "query_string": query.encode(), "headers": request_headers,
             "client": (client, 5000), "server": ("testserver", 80), "scheme": "http", "root_path": "",
             "http_version": "1.1", "asgi": {"version": "3.0"}}
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    out: dict[str, list[str]] = {}
    for key, value in start.get("headers", []):
        out.setdefault(key.decode().lower(), []).append(value.decode())
    return start["status"], out, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_scrypt: None) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    users = _write(tmp_path / "users.toml", {"quinn": ("qa", auth.hash_password("quinn-pass"))})
    monkeypatch.setenv(ENV_USERS_FILE, str(users))
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    monkeypatch.setenv(ENV_IDLE_MINUTES, "7")  # a table of its own for this test
    monkeypatch.setattr(web, "THROTTLE", auth.LoginThrottle())

    async def page(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("the app")

    return Starlette(routes=[*web.routes(), Route("/{rest:path}", page)], middleware=[Middleware(web.LoginGate)])


def _cookies(headers: dict[str, list[str]]) -> dict[str, str]:
    return {c.split("=", 1)[0]: c for c in headers.get("set-cookie", [])}


def _log_in(site: Any, password: str, client: str = "127.0.0.1", next_path: str = "/board?board=3"):
    status, headers, body = _call(site, "GET", web.LOGIN_PATH, query=urlencode({"next": next_path}), client=client)
    assert status == 200 and b'name="password"' in body
    csrf = _cookies(headers)[web.CSRF_COOKIE].split(";")[0].split("=", 1)[1]
    form = urlencode({"user": "quinn", "password": password, "csrf": csrf, "next": next_path}).encode()
    return _call(site, "POST", web.LOGIN_PATH, body=form, client=client,
                 headers={"cookie": f"{web.CSRF_COOKIE}={csrf}", "content-type": "application/x-www-form-urlencoded",
                          "origin": "http://testserver"})


def test_a_page_without_a_session_goes_to_the_form_and_a_login_sets_an_httponly_cookie(site: Any) -> None:
    status, headers, _ = _call(site, "GET", "/board", query="board=3&session=stolen-token")
    assert status == 303 and headers["location"][0].startswith("/bi/login?next=%2Fboard%3Fboard%3D3")
    status, headers, _ = _log_in(site, "quinn-pass")
    assert status == 303 and headers["location"] == ["/board?board=3"]  # nothing of the login in the address
    cookie = _cookies(headers)[sessions.COOKIE]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    status, headers, body = _call(site, "GET", "/board", query="board=3",
                                  headers={"cookie": f"{sessions.COOKIE}={session_id}"})
    assert status == 200 and body == b"the app" and headers["cache-control"] == ["no-store"]
    status, headers, _ = _call(site, "POST", web.LOGOUT_PATH, headers={"cookie": f"{sessions.COOKIE}={session_id}"})
    assert status == 303
    status, _, _ = _call(site, "GET", "/board", headers={"cookie": f"{sessions.COOKIE}={session_id}"})
    assert status == 303  # the same cookie opens nothing after log out


def test_login_refuses_wrong_password_missing_form_token_and_foreign_origin(site: Any) -> None:
    status, headers, body = _log_in(site, "wrong")
    assert status == 401 and b"wrong password" in body and sessions.COOKIE not in _cookies(headers)
    form = urlencode({"user": "quinn", "password": "quinn-pass", "csrf": "x", "next": "/"}).encode()
    status, _, _ = _call(site, "POST", web.LOGIN_PATH, body=form, headers={"cookie": f"{web.CSRF_COOKIE}=y"})
    assert status == 403
    status, _, _ = _call(site, "POST", web.LOGIN_PATH, body=form,
                         headers={"cookie": f"{web.CSRF_COOKIE}=x", "origin": "http://evil.example"})
    assert status == 403


def test_login_throttle_blocks_the_guessing_client_only(site: Any) -> None:
    for _ in range(5):
        assert _log_in(site, "wrong", client="10.9.9.9")[0] == 401
    status, _, body = _log_in(site, "quinn-pass", client="10.9.9.9")
    assert status == 429 and b"Too many wrong passwords" in body
    assert _log_in(site, "quinn-pass", client="10.0.0.5")[0] == 303  # quinn at her own PC still gets in


@pytest.mark.parametrize("target, expected", [
    ("/board?board=3", "/board?board=3"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), ("/bi/login", "/"), (None, "/"), ("board", "/"), ("/a\nb", "/"),
])
def test_redirect_after_login_stays_on_this_server(target: str | None, expected: str) -> None:
    assert web.safe_next(target) == expected


# --- inspector users ----------------------------------------------------------------------------

def _inspector(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)


def test_users_command_manages_an_owner_only_file_with_passwords_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    result = _inspector("users", "add", "maria", "--role", "qa", "--users", str(path), "--password-stdin",
                        stdin="maria-secret-1\n")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "maria-secret-1" not in path.read_text()
    assert auth.load_users(path).authenticate("maria", "maria-secret-1") == auth.User("maria", "qa")
    assert _inspector("users", "add", "olga", "--role", "operator", "--users", str(path), "--password-stdin",
                      stdin="olga-secret-1\n").returncode == 0
    assert _inspector("users", "list", "--users", str(path)).stdout.split("\n")[:2] == ["maria: qa", "olga: operator"]
    assert _inspector("users", "passwd", "olga", "--users", str(path), "--password-stdin",
                      stdin="olga-secret-2\n").returncode == 0
    users = auth.load_users(path)
    assert users.authenticate("olga", "olga-secret-2") and not users.authenticate("olga", "olga-secret-1")
    assert _inspector("users", "remove", "olga", "--users", str(path)).returncode == 0
    assert set(auth.load_users(path).roles) == {"maria"}
    refused = _inspector("users", "add", "kim", "--role", "qa", "--users", str(path), "--password", "kim-secret-1")
    assert refused.returncode == 2 and "kim" not in auth.load_users(path).roles  # never from argv
    short = _inspector("users", "add", "kim", "--role", "qa", "--users", str(path), "--password-stdin", stdin="x\n")
    assert short.returncode == 1 and "too short" in short.stderr


def test_users_file_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_scrypt: None) -> None:
    from deploy.dashboard import users_cmd

    path = tmp_path / "users.toml"
    path.touch()  # made empty by `install -o inspector -m 0600 /dev/null ...`
    users_cmd.manage("add", path, "maria", role="qa", password_stdin=True, stdin=_Lines("maria-secret-1\n"))
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        users_cmd.manage("add", path, "olga", role="operator", password_stdin=True, stdin=_Lines("olga-secret-1\n"))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["users.toml"]


class _Lines:
    def __init__(self, text: str) -> None:
        self.text = text

    def readline(self) -> str:
        return self.text


# --- demo logins ----------------------------------------------------------------------------------

def test_dashboard_refuses_demo_logins_unless_the_demo_starts_it(tmp_path: Path) -> None:
    from deploy.extension import EXTENSION

    demo_users = EXTENSION.demo_users_file(tmp_path / "demo")
    assert auth.load_users(demo_users).authenticate("qa", "demo-qa") == auth.User("qa", "qa")
    with pytest.raises(ConfigError, match="operator, qa still have the published demo password"):
        streamlit_command(DashboardConfig(users_file=str(demo_users)), tmp_path / "data")
    argv, _ = streamlit_command(DashboardConfig(users_file=str(demo_users)), tmp_path / "data", demo=True)
    assert argv[4].endswith("server.py")


def test_no_demo_users_file_ships_with_the_package_or_the_image() -> None:
    assert not (REPO_ROOT / "deploy" / "demo-users.toml").exists()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'deploy = ["example-config.toml"' in pyproject
    containerfile = (REPO_ROOT / "deploy" / "Containerfile").read_text()
    assert "demo-users" not in containerfile.replace("# ", "")


def test_settings_read_the_idle_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_USERS_FILE, str(tmp_path / "u.toml"))
    monkeypatch.setenv(ENV_IDLE_MINUTES, "5")
    assert settings.settings_from_env().idle_minutes == 5.0
    monkeypatch.setenv(ENV_IDLE_MINUTES, "0")
    with pytest.raises(ConfigError, match="positive"):
        settings.settings_from_env()
