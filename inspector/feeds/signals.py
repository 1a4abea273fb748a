"""Process plumbing of the feeds: signals that stop a loop cleanly, file events that wake it early."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT ask the loop to finish the batch in hand and exit cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def inbox_observer(inbox: Path, wake: threading.Event) -> Iterator[None]:
    """Watchdog events only wake the loop early; the scan decides what is there."""
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    class Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            wake.set()

    observer = Observer()
    observer.schedule(Wake(), str(inbox), recursive=False)
    observer.daemon = True
    try:
        observer.start()
    except OSError as exc:  # e.g. inotify watch limit: polling still works
        log.warning("file events unavailable for %s (%s); polling every scan", inbox, exc)
        yield
        return
    try:
        yield
    finally:
        # watchdog 7 logs a spurious ERROR when a stop races an inotify read; at shutdown it means nothing.
        inotify_log = logging.getLogger("watchdog.observers.inotify")
        level = inotify_log.level
        inotify_log.setLevel(logging.CRITICAL)
        try:
            observer.stop()
            observer.join(timeout=5)
        finally:
            inotify_log.setLevel(level)
