"""Dashboard logins: a TOML users file with salted scrypt hashes and two roles.

Users file layout (see docs/deployment.md):

    [users.alice]
    role = "operator"            # "operator" reviews boards; "qa" also changes thresholds
    password = "scrypt$16384$8$1$<salt base64>$<hash base64>"

Create a hash with `python -m deploy.dashboard.auth hash-password` (prompts twice, prints the line to paste).
Only the standard library is used so the line PC needs nothing extra for logins.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tomllib

from inspector.errors import ConfigError, InspectorError

ROLES = ("operator", "qa")
ROLE_QA = "qa"
ROLE_OPERATOR = "operator"

# scrypt cost: ~50 ms per check on a line PC, cheap for a login form, expensive for guessing.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
SCHEME = "scrypt"


class AccessDenied(InspectorError, PermissionError):
    """The logged-in user's role does not allow the action (e.g. a threshold change without QA)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_qa(self) -> bool:
        return self.role == ROLE_QA


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A self-describing scrypt hash with its own random salt."""
    if not password:
        raise ConfigError("password must not be empty")
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=KEY_BYTES, maxmem=64 * 1024 * 1024)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def _parse_hash(encoded: str, where: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ConfigError(f"{where}: password must be a '{SCHEME}$N$r$p$salt$hash' string "
                          "(make one with `python -m deploy.dashboard.auth hash-password`)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed password hash ({exc})") from exc
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not key:
        raise ConfigError(f"{where}: password hash has invalid scrypt parameters")
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time comparison of the derived key with the stored one."""
    n, r, p, salt, key = _parse_hash(encoded, "password hash")
    candidate = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(key),
                               maxmem=128 * 1024 * 1024)
    return hmac.compare_digest(candidate, key)


@dataclass(frozen=True)
class UsersFile:
    path: Path
    hashes: dict[str, str]
    roles: dict[str, str]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when name and password match, else None (same work either way)."""
        name = name.strip()
        encoded = self.hashes.get(name)
        # Unknown names still pay for one scrypt so response time does not reveal valid names.
        ok = verify_password(password, encoded if encoded is not None else _DUMMY_HASH)
        if encoded is None or not ok:
            return None
        return User(name=name, role=self.roles[name])


def load_users(path: str | Path) -> UsersFile:
    """Read and validate a users file; every problem is a ConfigError naming the file and user."""
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
    hashes: dict[str, str] = {}
    roles: dict[str, str] = {}
    for name, entry in users.items():
        where = f"{path}: user {name!r}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table with role and password")
        unknown = sorted(set(entry) - {"role", "password"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
        role = entry.get("role")
        if role not in ROLES:
            raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
        encoded = entry.get("password")
        if not isinstance(encoded, str):
            raise ConfigError(f"{where}: password hash missing")
        _parse_hash(encoded, where)
        hashes[name] = encoded
        roles[name] = role
    return UsersFile(path=path, hashes=hashes, roles=roles)


def require_role(user: User | None, role: str, action: str) -> User:
    """Raise AccessDenied unless `user` holds `role` (QA may do everything an operator may)."""
    if user is None:
        raise AccessDenied(f"{action}: login required")
    if role == ROLE_OPERATOR and user.role in ROLES:
        return user
    if user.role != role:
        raise AccessDenied(f"{action}: user {user.name!r} has role {user.role!r}, needs {role!r}")
    return user


class LoginThrottle:
    """Slows password guessing: after `max_failures` wrong passwords for a name within `window_s`,
    that name is refused for `lockout_s` (shared by all browser sessions of one dashboard)."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0, lockout_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.lockout_s, self.clock = max_failures, window_s, lockout_s, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked_for(self, name: str) -> float:
        """Seconds until `name` may try again (0 when it may now)."""
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < self.window_s]
            self._failures[name] = recent
            if len(recent) < self.max_failures:
                return 0.0
            return max(0.0, recent[-1] + self.lockout_s - now)

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures.setdefault(name, []).append(self.clock())

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


class SessionTokens:
    """Signed, expiring login tokens, so that reloading the page keeps an operator logged in.

    The browser keeps the token in the page address (`?session=...`); Streamlit gives the app no
    cookies it could set. So a token is limited:
    - it expires after `lifetime_s` (a shift);
    - it is bound to the user's password hash, so changing the password in the users file ends it;
    - it is bound to the client's address where the server sees one, so a copied link opened on
      another PC shows the login form (behind a reverse proxy every client has the proxy's address);
    - logging out revokes it;
    - it is signed with a secret that lives only in this server process, so a dashboard restart
      logs everybody out.
    A token never carries the role: the role is read from the users file each time.
    """

    def __init__(self, lifetime_s: float = 12 * 3600.0, secret: bytes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not (math.isfinite(lifetime_s) and lifetime_s > 0):
            raise ConfigError(f"session lifetime must be a positive number of seconds, got {lifetime_s}")
        self.lifetime_s, self.clock = lifetime_s, clock
        self._secret = secret if secret is not None else os.urandom(32)
        self._revoked: dict[str, float] = {}  # nonce -> expiry: forgotten once the token would have expired
        self._lock = threading.Lock()

    def _signature(self, payload: str, password_hash: str, client: str) -> bytes:
        digest = hmac.new(self._secret, f"{payload}|{password_hash}|{client}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=")

    @staticmethod
    def _claims(token: str) -> tuple[str, dict] | None:
        payload, _, _ = token.partition(".")
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii") + b"=" * (-len(payload) % 4)))
        except (ValueError, UnicodeError):
            return None
        if not (isinstance(claims, dict) and isinstance(claims.get("user"), str)
                and isinstance(claims.get("expires"), int) and isinstance(claims.get("nonce"), str)):
            return None
        return payload, claims

    def issue(self, user: User, users: UsersFile, client: str = "") -> str:
        claims = {"user": user.name, "expires": int(self.clock() + self.lifetime_s), "nonce": os.urandom(9).hex()}
        # No "=" padding: the token sits in a query string.
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode("ascii").rstrip("=")
        return f"{payload}.{self._signature(payload, users.hashes[user.name], client).decode('ascii')}"

    def user_for(self, token: str, users: UsersFile, client: str = "") -> User | None:
        """The user a token stands for, or None (malformed, forged, expired, revoked, other client, user gone)."""
        parsed = self._claims(token)
        if parsed is None:
            return None
        payload, claims = parsed
        encoded = users.hashes.get(claims["user"])
        signature = token.partition(".")[2].encode("utf-8", "replace")  # bytes: compare_digest refuses non-ASCII str
        if encoded is None or not hmac.compare_digest(signature, self._signature(payload, encoded, client)):
            return None
        now = self.clock()
        with self._lock:
            if claims["nonce"] in self._revoked:
                return None
        if now >= claims["expires"]:
            return None
        return User(name=claims["user"], role=users.roles[claims["user"]])

    def revoke(self, token: str) -> None:
        parsed = self._claims(token)
        if parsed is None:
            return
        claims = parsed[1]
        now = self.clock()
        with self._lock:
            self._revoked = {nonce: expires for nonce, expires in self._revoked.items() if expires > now}
            self._revoked[claims["nonce"]] = claims["expires"]


_DUMMY_HASH = hash_password("not-a-real-password", salt=b"\0" * SALT_BYTES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.dashboard.auth", description="Dashboard users-file helpers.")
    commands = parser.add_subparsers(dest="command", required=True)
    hash_cmd = commands.add_parser("hash-password", help="Print a scrypt hash for a users file.")
    hash_cmd.add_argument("--stdin", action="store_true", help="Read the password from stdin (scripts).")
    check_cmd = commands.add_parser("check", help="Validate a users file.")
    check_cmd.add_argument("users_file", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "hash-password":
            if args.stdin:
                password = sys.stdin.readline().rstrip("\n")
            else:
                password = getpass.getpass("password: ")
                if getpass.getpass("again: ") != password:
                    raise ConfigError("passwords differ")
            print(f'password = "{hash_password(password)}"')
        else:
            users = load_users(args.users_file)
            for name in sorted(users.roles):
                print(f"{name}: {users.roles[name]}")
    except InspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
