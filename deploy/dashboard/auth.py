"""Dashboard logins: a TOML users file with salted scrypt hashes and two roles.

Users file layout (see docs/deployment.md; manage it with `inspector users add|passwd|remove|list`):

    [users.alice]
    role = "operator"            # "operator" reviews boards; "qa" also changes thresholds
    password = "scrypt$131072$8$1$<salt base64>$<hash base64>"

Only the standard library is used so the line PC needs nothing extra for logins. Sessions (what a
login becomes) live in sessions.py; the login and logout pages in web.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from inspector.atomic import atomic_write
from inspector.errors import ConfigError, InspectorError

# The roles and their check live in the runtime (inspector.review.roles), shared with `inspector review`
# and `inspector learn`; this module keeps the users file's passwords.
from inspector.review.roles import User, read_users_table

# scrypt cost at current guidance (OWASP: N=2^17, r=8, p=1): 128 MiB and ~0.3 s per check.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
SCHEME = "scrypt"
MAX_SCRYPT_MEMORY = 512 * 1024 * 1024  # a hash needing more is refused when the file is read
# At most this many scrypt checks at once: each takes 128 MiB on the PC that also inspects.
_SCRYPT_SLOTS = threading.BoundedSemaphore(2)

# The published demo logins (README, operator guide): a users file holding them is refused
# unless `inspector demo` starts the dashboard.
DEMO_PASSWORDS = {"operator": "demo-operator", "qa": "demo-qa"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _memory(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p) + 1024 * 1024


def hash_password(password: str, *, salt: bytes | None = None, n: int | None = None) -> str:
    """A self-describing scrypt hash with its own random salt (at today's cost unless `n` is given)."""
    n = SCRYPT_N if n is None else n
    if not password:
        raise ConfigError("password must not be empty")
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                         dklen=KEY_BYTES, maxmem=_memory(n, SCRYPT_R, SCRYPT_P))
    return f"{SCHEME}${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def _parse_hash(encoded: str, where: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ConfigError(f"{where}: password must be a '{SCHEME}$N$r$p$salt$hash' string "
                          "(set it with `inspector users passwd NAME --users FILE`)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed password hash ({exc})") from exc
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not key:
        raise ConfigError(f"{where}: password hash has invalid scrypt parameters")
    if _memory(n, r, p) > MAX_SCRYPT_MEMORY or p > 16:
        raise ConfigError(f"{where}: password hash needs more than {MAX_SCRYPT_MEMORY >> 20} MiB to check")
    return n, r, p, salt, key


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time comparison of the derived key with the stored one."""
    n, r, p, salt, key = _parse_hash(encoded, "password hash")
    with _SCRYPT_SLOTS:
        candidate = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(key),
                                   maxmem=_memory(n, r, p))
    return hmac.compare_digest(candidate, key)


def needs_rehash(encoded: str) -> bool:
    """True for a hash made with other (older, cheaper) parameters than today's."""
    n, r, p, salt, key = _parse_hash(encoded, "password hash")
    return (n, r, p) != (SCRYPT_N, SCRYPT_R, SCRYPT_P) or len(salt) < SALT_BYTES or len(key) < KEY_BYTES


@dataclass(frozen=True)
class UsersFile:
    path: Path
    hashes: dict[str, str]
    roles: dict[str, str]

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when name and password match, else None (same work either way).

        A matching password stored with older scrypt parameters is re-hashed at today's cost and
        the users file rewritten (when the dashboard may write it; otherwise it keeps working)."""
        name = name.strip()
        encoded = self.hashes.get(name)
        # Unknown names still pay for one scrypt so response time does not reveal valid names.
        ok = verify_password(password, encoded if encoded is not None else _dummy_hash())
        if encoded is None or not ok:
            return None
        if needs_rehash(encoded):
            try:
                upgraded = load_users(self.path)
                if upgraded.hashes.get(name) == encoded:
                    upgraded.hashes[name] = hash_password(password)
                    write_users(upgraded)
            except (OSError, InspectorError):
                pass  # a read-only users file: the old hash still verifies
        return User(name=name, role=self.roles[name])


def load_users(path: str | Path) -> UsersFile:
    """Read and validate a users file; every problem is a ConfigError naming the file and user."""
    path = Path(path)
    users = read_users_table(path)
    hashes: dict[str, str] = {}
    roles: dict[str, str] = {}
    for name, entry in users.items():
        where = f"{path}: user {name!r}"
        role = entry["role"]
        encoded = entry.get("password")
        if not isinstance(encoded, str):
            raise ConfigError(f"{where}: password hash missing")
        _parse_hash(encoded, where)
        hashes[name] = encoded
        roles[name] = role
    return UsersFile(path=path, hashes=hashes, roles=roles)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if any(ord(c) < 32 for c in escaped):
        raise ConfigError(f"{value!r}: control characters are not allowed")
    return f'"{escaped}"'


def write_users(users: UsersFile) -> None:
    """Replace the users file atomically, readable by its owner only (0600)."""
    lines = ["# Dashboard logins; manage with `inspector users add|passwd|remove|list --users FILE`.", ""]
    for name in sorted(users.hashes):
        lines += [f"[users.{_toml_string(name)}]", f"role = {_toml_string(users.roles[name])}",
                  f"password = {_toml_string(users.hashes[name])}", ""]
    text = "\n".join(lines).encode("utf-8")

    def _write(stream: BinaryIO) -> None:
        stream.write(text)

    atomic_write(users.path, _write, mode=0o600, durable=True)


def demo_logins_in(users: UsersFile) -> list[str]:
    """The user names in `users` that still have their published demo password."""
    return sorted(name for name, password in DEMO_PASSWORDS.items()
                  if name in users.hashes and verify_password(password, users.hashes[name]))


class LoginThrottle:
    """Slows password guessing without locking anyone out for good.

    Failures are counted per client address and per user name, each in a sliding `window_s`:
    a client with `client_failures` recent failures, or a name with `name_failures`, waits
    `lockout_s` after its last failure. The name limit is higher than the client one, so one
    client alone cannot lock a name out. Both tables are bounded (least recently used entries
    are forgotten), so a flood of invented names or addresses costs no memory growth.
    """

    def __init__(self, client_failures: int = 5, name_failures: int = 20, window_s: float = 300.0,
                 lockout_s: float = 60.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"client": client_failures, "name": name_failures}
        self.window_s, self.lockout_s, self.max_entries, self.clock = window_s, lockout_s, max_entries, clock
        self._tables: dict[str, OrderedDict[str, deque[float]]] = {"client": OrderedDict(), "name": OrderedDict()}
        self._lock = threading.Lock()

    def _wait(self, kind: str, key: str, now: float) -> float:
        recent = self._tables[kind].get(key)
        if not recent:
            return 0.0
        while recent and now - recent[0] >= self.window_s:
            recent.popleft()
        if len(recent) < self.limits[kind]:
            return 0.0
        return max(0.0, recent[-1] + self.lockout_s - now)

    def blocked_for(self, name: str, client: str = "") -> float:
        """Seconds until this client may try this name again (0 when it may now)."""
        now = self.clock()
        with self._lock:
            return max(self._wait("client", client, now), self._wait("name", name, now))

    def failed(self, name: str, client: str = "") -> None:
        now = self.clock()
        with self._lock:
            for kind, key in (("client", client), ("name", name)):
                table = self._tables[kind]
                times = table.pop(key, None) or deque(maxlen=self.limits[kind])
                times.append(now)
                table[key] = times  # most recently used last
                while len(table) > self.max_entries:
                    table.popitem(last=False)

    def succeeded(self, name: str, client: str = "") -> None:
        with self._lock:
            self._tables["name"].pop(name, None)
            self._tables["client"].pop(client, None)

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password("not-a-real-password", salt=b"\0" * SALT_BYTES))
    return _DUMMY[0]
