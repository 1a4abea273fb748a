"""File-state helpers of the folder feed: which inbox names are ready, where a file lands, one runner per folder.

Each file moves through folders on one filesystem, so every move is an atomic `os.rename`:

    inbox/NAME --claim--> data_dir/processing/NAME --(row stored)--> data_dir/done/NAME
                                                   \\--(bad image)--> data_dir/quarantine/NAME
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inspector.errors import InspectorError
from inspector.feeds.safeio import fit_name

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")


def is_temp_name(name: str) -> bool:
    """Names writers use before renaming into place; such files are never taken."""
    return name.startswith(".") or name.endswith("~") or name.lower().endswith(TEMP_SUFFIXES)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _same_bytes(path: Path, digest: str) -> bool:
    """Whether a regular file (links and FIFOs are never opened: never the same) holds these bytes."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return False
        hasher = hashlib.sha256()
        while chunk := os.read(handle, 1 << 20):
            hasher.update(chunk)
        return hasher.hexdigest() == digest
    except OSError:
        return False
    finally:
        os.close(handle)


def final_path(folder: Path, name: str, digest: str) -> Path:
    """Where a file with these bytes ends up in done/ or quarantine/, never overwriting other bytes.

    Deterministic given the folder's contents, so a move repeated after a crash lands where the
    stored row already points. A prefix never pushes a long name past 255 bytes (`fit_name`).
    """
    for candidate in (folder / fit_name(name), folder / fit_name(name, f"{digest[:12]}-")):
        if not os.path.lexists(candidate) or _same_bytes(candidate, digest):
            return candidate
    return folder / fit_name(name, f"{digest}-{time.time_ns()}-")


def scan_inbox(inbox: Path, skip: set[str]) -> dict[str, os.stat_result]:
    """Inbox entries that may be taken, with their lstat. Links, FIFOs and devices are listed too
    (the runner claims them and quarantines them unread); folders and temporary names are not."""
    entries: dict[str, os.stat_result] = {}
    try:
        with os.scandir(inbox) as it:
            for entry in it:
                if is_temp_name(entry.name) or entry.name in skip:
                    continue
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        entries[entry.name] = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # renamed away between listing and stat
    except FileNotFoundError as exc:
        raise InspectorError(f"{inbox}: inbox folder disappeared") from exc
    return entries


@dataclass
class Folders:
    inbox: Path
    processing: Path
    done: Path
    quarantine: Path
    overlays: Path

    @classmethod
    def create(cls, inbox: Path, data_dir: Path) -> Folders:
        if not inbox.is_dir():
            raise InspectorError(f"{inbox}: inbox folder does not exist")
        folders = cls(inbox, data_dir / "processing", data_dir / "done", data_dir / "quarantine",
                      data_dir / "overlays")
        for folder in (folders.processing, folders.done, folders.quarantine, folders.overlays):
            folder.mkdir(parents=True, exist_ok=True)
        inbox_device = os.stat(inbox).st_dev
        for folder in (folders.processing, folders.done, folders.quarantine):
            if os.stat(folder).st_dev != inbox_device:
                raise InspectorError(
                    f"{folder} is on a different filesystem from the inbox {inbox}: moves would not be atomic; "
                    "put --data-dir on the same filesystem as the inbox"
                )
        return folders


@contextmanager
def exclusive_lock(data_dir: Path) -> Iterator[None]:
    """One runner per data directory: two would claim the same processing/ files."""
    path = data_dir / "runner.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise InspectorError(f"{data_dir}: another runner is already using this data directory") from exc
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class StabilityTracker:
    """A file is ready once its size and mtime have stopped changing for `stable_seconds`."""

    def __init__(self, stable_seconds: float, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.stable_seconds = stable_seconds
        self._clock = clock
        self._wall = wall
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}

    def ready(self, entries: dict[str, os.stat_result]) -> list[str]:
        now = self._clock()
        wall = self._wall()
        ready: list[str] = []
        current: dict[str, tuple[tuple[int, int, int], float]] = {}
        for name, st in entries.items():
            signature = (st.st_size, st.st_mtime_ns, st.st_ino)
            previous = self._seen.get(name)
            since = previous[1] if previous and previous[0] == signature else now
            current[name] = (signature, since)
            if self.stable_seconds <= 0:
                ready.append(name)
            elif previous and previous[0] == signature and (
                    now - since >= self.stable_seconds or wall - st.st_mtime_ns / 1e9 >= self.stable_seconds):
                # Unchanged across two scans, and quiet long enough by our clock or by the file's own mtime
                # (files already there at start-up need not wait a full period again).
                ready.append(name)
        self._seen = current
        return sorted(ready, key=lambda n: (entries[n].st_mtime_ns, n))

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)
