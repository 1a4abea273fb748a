"""Inputs opened safely and names stored safely, whatever a producer drops into the inbox.

* `read_regular`: only a regular file is ever read. It is opened with `O_NOFOLLOW | O_NONBLOCK`
  (a symbolic link swapped in after the scan fails instead of being followed; a FIFO cannot block
  the open), checked with `fstat` (FIFOs, devices, sockets are refused unread) and its size is
  checked against a cap before a single byte is read.
* `display_name`: file names are bytes on Linux; Python hands names that are not UTF-8 over with
  surrogate escapes, which no database, JSON or log line can encode. The stored and shown form
  replaces each undecodable byte with `\\xNN`; `raw_name_hex` keeps the exact bytes (stored beside
  the readable form) so the original name is never lost.
* `fit_name`: a prefix added to a name (collision in `done/`) never pushes it past the
  filesystem's 255-byte limit; the stem is shortened, the extension kept.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from inspector.errors import ImageLoadError

NAME_MAX_BYTES = 255
_CHUNK = 1 << 20


class NotRegularFile(ImageLoadError):
    """A symbolic link, FIFO, device or socket where an image file was expected: never read."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular_reason(mode: int) -> str | None:
    """Why an entry of this `st_mode` is never read, or None for a regular file."""
    return None if stat.S_ISREG(mode) else f"{_kind(mode)}, not a regular file: never read"


def read_regular(path: Path, max_bytes: int, label: str | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or `ImageLoadError` (`NotRegularFile`)."""
    shown = label or display_name(str(path))
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except OSError as exc:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            mode = 0
        if mode and not stat.S_ISREG(mode):
            raise NotRegularFile(shown, _kind(mode) + ", not a regular file: never read") from exc
        raise ImageLoadError(shown, f"cannot open ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(handle)
        reason = not_regular_reason(info.st_mode)
        if reason:
            raise NotRegularFile(shown, reason)
        if info.st_size > max_bytes:
            raise ImageLoadError(shown, f"file is {info.st_size} bytes, over the limit of {max_bytes} "
                                        "(runner.max_file_bytes)")
        chunks: list[bytes] = []
        total = 0
        while True:  # the size may change under us: never read past the cap
            chunk = os.read(handle, min(_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ImageLoadError(shown, f"file grew past the limit of {max_bytes} bytes while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise ImageLoadError(shown, f"cannot read ({exc.strerror or exc})") from exc
    finally:
        os.close(handle)


HASH_LIMIT_FACTOR = 4  # an oversize file is hashed up to this many times the size cap, then by its head


def quarantine_digest(path: Path, max_bytes: int) -> str:
    """A digest for a file quarantined before (or without) being read whole, so the same file dropped
    again is recognised by its row instead of being tried again: the sha256 of its content, streamed
    without decoding (an oversize file: of its first HASH_LIMIT_FACTOR x max_bytes bytes and its size);
    a file that cannot be read at all (no permission, not a regular file): of what identifies it
    (name, size, modification time), prefixed so it can never equal a content digest."""
    import hashlib

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except OSError:
        return _identity_digest(path)
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            return _identity_digest(path)
        digest = hashlib.sha256()
        limit, total = HASH_LIMIT_FACTOR * max(1, max_bytes), 0
        while total < limit:
            chunk = os.read(handle, min(_CHUNK, limit - total))
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
            total += len(chunk)
        digest.update(f"\0oversize {info.st_size}".encode())
        return digest.hexdigest()
    except OSError:
        return _identity_digest(path)
    finally:
        os.close(handle)


def _identity_digest(path: Path) -> str:
    import hashlib

    try:
        info = os.lstat(path)
        identity = f"{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode}"
    except OSError:
        identity = "gone"
    return hashlib.sha256(b"unread\0" + name_bytes(path.name) + b"\0" + identity.encode()).hexdigest()


def name_bytes(name: str) -> bytes:
    return os.fsencode(name)


def display_name(name: str) -> str:
    """A readable form that any store, JSON line or log can hold (`caf\\xe9.png` for Latin-1 bytes).

    Control characters (a newline in a name) are escaped too, so a name cannot forge log lines.
    """
    text = name_bytes(name).decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def raw_name_hex(name: str) -> str | None:
    """The name's exact bytes in hex when the readable form differs from them, else None."""
    raw = name_bytes(name)
    return None if display_name(name).encode("utf-8") == raw else raw.hex()


def fit_name(name: str, prefix: str = "", limit: int = NAME_MAX_BYTES) -> str:
    """`prefix + name`, the stem shortened (at a character boundary) so the whole is at most `limit` bytes."""
    whole = prefix + name
    if len(os.fsencode(whole)) <= limit:
        return whole
    stem, dot, suffix = name.rpartition(".")
    if not dot or len(os.fsencode(suffix)) > 16:
        stem, dot, suffix = name, "", ""
    room = limit - len(os.fsencode(prefix + dot + suffix)) - 1
    raw = os.fsencode(stem)[: max(room, 1)]
    short = os.fsdecode(raw.decode("utf-8", "ignore").encode("utf-8")) if _is_utf8(os.fsencode(stem)) else os.fsdecode(raw)
    return f"{prefix}{short}~{dot}{suffix}"


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
