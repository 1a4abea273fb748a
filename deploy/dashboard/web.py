"""The login and logout pages and the gate in front of every dashboard page (plain HTTP, Starlette).

Streamlit page code cannot set a cookie, and a login in the address is copied with every link.
So logging in happens here, in routes served by the same process as the app (server.py mounts
them with st.App): a plain HTML form posts to /bi/login, which checks the password, creates a
server-side session (sessions.py) and answers with an HttpOnly, SameSite=Strict cookie that holds
only the session's random id, then redirects to the page asked for. The gate sends every page
request without a live session to the form; the pages check the session again on every run
(context.restore_session), because a page stays open across expiry and logout.
"""

from __future__ import annotations

import hmac
import html
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from deploy.dashboard.auth import LoginThrottle
from deploy.dashboard.sessions import COOKIE
from deploy.dashboard.settings import session_table, settings_from_env, users
from inspector.errors import InspectorError

LOGIN_PATH = "/bi/login"
LOGOUT_PATH = "/bi/logout"
CSRF_COOKIE = "board_inspector_login"
MAX_FORM_BYTES = 8192
# Paths the gate lets through without a session: Streamlit's own endpoints (its websocket runs
# the page code, which checks the session itself), its static files and the login pages.
OPEN_PREFIXES = ("/_stcore/", "/static/", "/bi/", "/component/", "/media/", "/favicon")
THROTTLE = LoginThrottle()

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>board-inspector: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}}
label{{display:block;margin-top:1rem}}input{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}
button{{margin-top:1.2rem;padding:.6rem 1.4rem;font-size:1rem}}.error{{color:#b00020}}</style></head>
<body><h1>board-inspector</h1>
<p>Log in to review flagged boards (operator) or to change thresholds (QA).</p>
{message}
<form method="post" action="{action}">
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label for="user">User</label><input id="user" name="user" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form></body></html>
"""


def safe_next(target: str | None) -> str:
    """Only a path on this server (never another site, never the login page itself)."""
    if not target or len(target) > 2000 or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("/bi/") or any(ord(c) < 32 for c in target):
        return "/"
    return target


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _form(request: Request, next_path: str, message: str = "", status: int = 200) -> Response:
    csrf = secrets.token_urlsafe(24)
    body = _PAGE.format(action=LOGIN_PATH, csrf=csrf, next=html.escape(next_path, quote=True),
                        message=f'<p class="error" role="alert">{html.escape(message)}</p>' if message else "")
    response = _no_store(HTMLResponse(body, status_code=status))
    response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/bi/", secure=_secure(request))
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


async def login(request: Request) -> Response:
    settings = settings_from_env()
    if request.method != "POST":
        next_path = safe_next(request.query_params.get("next"))
        current = users(settings)
        if session_table(settings).user_for(request.cookies.get(COOKIE), current, touch=False) is not None:
            return _no_store(RedirectResponse(next_path, status_code=303))
        return _form(request, next_path)
    raw = await request.body()
    fields = {k: v[0] for k, v in parse_qs(raw[:MAX_FORM_BYTES].decode("utf-8", "replace")).items() if v}
    next_path = safe_next(fields.get("next"))
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        return _form(request, next_path, "Log in from the dashboard's own page.", 403)
    csrf = request.cookies.get(CSRF_COOKIE, "")
    if not csrf or not hmac.compare_digest(csrf.encode(), fields.get("csrf", "").encode()):
        return _form(request, next_path, "The login form expired; please try again.", 403)
    name, password, client = fields.get("user", "").strip()[:200], fields.get("password", ""), _client(request)
    wait = THROTTLE.blocked_for(name, client)
    if wait > 0:
        return _form(request, next_path, f"Too many wrong passwords; try again in {wait:.0f} s.", 429)
    current = users(settings)
    user = await run_in_threadpool(current.authenticate, name, password)
    if user is None:
        THROTTLE.failed(name, client)
        return _form(request, next_path, "Unknown user or wrong password.", 401)
    THROTTLE.succeeded(name, client)
    session_id = session_table(settings).issue(user, users(settings))
    response = _no_store(RedirectResponse(next_path, status_code=303))
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/", secure=_secure(request))
    response.delete_cookie(CSRF_COOKIE, path="/bi/")
    return response


async def logout(request: Request) -> Response:
    settings = settings_from_env()
    session_table(settings).end(request.cookies.get(COOKIE))
    response = _no_store(RedirectResponse(LOGIN_PATH, status_code=303))
    response.delete_cookie(COOKIE, path="/")
    return response


def routes() -> list[Route]:
    return [Route(LOGIN_PATH, login, methods=["GET", "POST"]), Route(LOGOUT_PATH, logout, methods=["POST"])]


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                return None
            morsel = jar.get(name)
            return morsel.value if morsel is not None else None
    return None


class LoginGate:
    """ASGI middleware: a page request without a live session is sent to the login form."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD") or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            settings = settings_from_env()
            user = session_table(settings).user_for(_cookie(scope, COOKIE), users(settings))
        except InspectorError:
            user = None  # a broken users file: the form says nothing more, the app names the problem
            await self.app(scope, receive, send)
            return
        if user is not None:
            await self.app(scope, receive, _adding_no_store(send))
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        response = _no_store(RedirectResponse(f"{LOGIN_PATH}?next={quote(safe_next(target), safe='')}", 303))
        await response(scope, receive, send)


def _adding_no_store(send: Send) -> Send:
    """Pages are never kept in the browser's cache: after log out, Back shows the form."""
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message.get("type") == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
            message["headers"] = [*headers, (b"cache-control", b"no-store")]
        await send(message)
    return wrapped
