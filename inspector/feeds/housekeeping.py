"""Disk housekeeping of a feed's data directory: retention by age, and a pause when the disk is full.

* `runner.retention_days` (0 = keep forever): files in `done/`, `overlays/` and `camera/` older
  than this are deleted, at most once an hour. Rows in the store are never deleted (their image
  paths then point at nothing; the dashboard shows the verdict without the picture).
  `quarantine/`, `processing/` and `camera-unstored/` are never cleaned here: quarantine needs a person,
  and the feeds take `processing/` and `camera-unstored/` back themselves at their next start.
* `runner.min_free_bytes` (0 = never pause): below this much free space on the data directory's
  filesystem the folder runner takes no new boards (they wait in the inbox, nothing is lost), says
  so once with a `disk_full` event (`disk_ok` when it resumes), sets the station state `disk_full` and turns `/healthz` to 503;
  it resumes by itself once space is back.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

RETENTION_FOLDERS = ("done", "overlays", "camera")
SWEEP_INTERVAL_SECONDS = 3600.0


def free_bytes(path: Path) -> int:
    return int(shutil.disk_usage(path).free)


def sweep(data_dir: Path, retention_days: float, now: float | None = None) -> int:
    """Delete files older than `retention_days` in the retention folders; returns how many went."""
    if retention_days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - retention_days * 86400.0
    removed = 0
    for name in RETENTION_FOLDERS:
        folder = Path(data_dir) / name
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError as exc:  # gone already, or not ours to delete: never stops the line
                log.debug("retention: %s not removed (%s)", entry.path, exc)
    if removed:
        log.info("retention: removed %d files older than %g days from %s", removed, retention_days,
                 ", ".join(RETENTION_FOLDERS))
    return removed


class DiskGuard:
    """Decides, once per loop pass, whether new boards may be taken; sweeps old files hourly."""

    def __init__(self, data_dir: Path, min_free_bytes: int, retention_days: float,
                 on_change: Callable[[bool, str], None], free: Callable[[Path], int] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.data_dir = Path(data_dir)
        self.min_free_bytes = int(min_free_bytes)
        self.retention_days = float(retention_days)
        self.on_change = on_change
        self._free = free
        self._clock = clock
        self._last_sweep = -float("inf")
        self.paused = False

    def may_take(self) -> bool:
        now = self._clock()
        if self.retention_days > 0 and now - self._last_sweep >= SWEEP_INTERVAL_SECONDS:
            self._last_sweep = now
            sweep(self.data_dir, self.retention_days)
        if self.min_free_bytes <= 0:
            return True
        try:
            free = (self._free or free_bytes)(self.data_dir)
        except OSError:
            return True
        full = free < self.min_free_bytes
        if full != self.paused:
            self.paused = full
            if full:
                self.on_change(True, f"disk nearly full: {free} bytes free on {self.data_dir}, under "
                                     f"runner.min_free_bytes = {self.min_free_bytes}; taking no new boards "
                                     "(they wait in the inbox) until space is freed")
            else:
                self.on_change(False, f"disk space back ({free} bytes free on {self.data_dir}); taking boards again")
        return not full
