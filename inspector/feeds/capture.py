"""Camera capture for the camera feed: the newest frame from a device or stream, and what triggers a shot.

A capture thread reads continuously and keeps only the newest frame (with its capture time and a
sequence number), so a trigger always inspects what the camera sees now. A video file is paced at
its own frame rate (it stands in for a camera) but never runs ahead of the loop: a replayed recording
gives every machine, fast or loaded, the same frames.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from inspector.config import CameraConfig
from inspector.errors import CameraError, ConfigError

log = logging.getLogger(__name__)

TRIGGERS = ("every", "interval", "stdin", "file", "line")
MAX_PART_ID_CHARS = 200  # inspections.part_id's width
NOT_INSPECTED = "not inspected"  # the error of a shot with nothing fit to judge (OPC UA: ResultState Aborted)
BLANK_STD = 2.0  # grey-level spread below which a frame is a blank (lens cap, unlit, dropped signal)
BLACK_MEAN = 8.0
LOOP_SECONDS = 0.01
MIN_FRAME_SIDE = 8  # pixels: a smaller frame is a broken stream, not a board


class Capture(Protocol):
    """The part of `cv2.VideoCapture` the feed uses (tests pass a scripted fake)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV naming)

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    seq: int
    captured_at: float  # on the feed's clock


def is_file_source(source: str) -> bool:
    return not source.isdigit() and "://" not in source


def open_video_capture(source: str, config: CameraConfig) -> Capture:
    """cv2.VideoCapture with explicit open/read timeouts (honoured by the FFmpeg and GStreamer backends)."""
    if is_file_source(source) and not Path(source).is_file():
        raise CameraError(f"{source}: video file not found")
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(config.open_timeout_seconds * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(config.read_timeout_seconds * 1000)]
    target: int | str = int(source) if source.isdigit() else source
    capture = cv2.VideoCapture(target, cv2.CAP_ANY, params)
    if not capture.isOpened():
        capture.release()
        raise CameraError(f"{source}: cannot open the camera or stream")
    return capture


class FrameGrabber:
    """Reads frames on its own thread and keeps only the newest one.

    A hung `read()` cannot be interrupted; the loop abandons the grabber (its thread is a daemon
    and its generation is retired, so a late frame is thrown away) and connects a new one.
    """

    def __init__(self, capture: Capture, clock: Callable[[], float], pace_fps: float = 0.0) -> None:
        self.capture = capture
        self.clock = clock
        self.pace_fps = pace_fps
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._seq = 0
        self.started_at = clock()
        self.last_read_at = self.started_at
        self.failed = False
        self.ended = False  # end of a video file
        self.retired = threading.Event()
        # A file is not a live camera: the next frame waits until the loop has looked at this one, so a
        # slow loop (a store outage, a loaded machine) pauses the recording instead of skipping boards.
        # Set while no frame waits for the loop (so before the first read too).
        self._seen = threading.Event()
        self._seen.set()
        self.thread = threading.Thread(target=self._run, name="camera-grabber", daemon=True)

    def start(self) -> FrameGrabber:
        self.thread.start()
        return self

    def _run(self) -> None:
        due = time.monotonic()  # when the next frame of a file is due
        while not self.retired.is_set():
            try:
                ok, image = self.capture.read()
            except cv2.error as exc:
                log.warning("camera read failed: %s", exc)
                ok, image = False, None
            if self.retired.is_set():
                return
            if not ok or image is None or image.size == 0:
                if self.pace_fps:
                    self.ended = True
                else:
                    self.failed = True
                return
            now = self.clock()
            with self._lock:
                self._seq += 1
                self._latest = Frame(image, self._seq, now)
                self.last_read_at = now
                self._seen.clear()
            if self.pace_fps:
                # A file has no real-time clock of its own: play it at its frame rate, and no faster than
                # the loop looks at its frames.
                while not self._seen.wait(0.05):
                    if self.retired.is_set():
                        return
                due = max(due + 1.0 / self.pace_fps, time.monotonic())
                delay = due - time.monotonic()
                if delay > 0:
                    self.retired.wait(delay)

    def latest(self) -> Frame | None:
        with self._lock:
            if self.pace_fps and self._latest is not None and not self._seen.is_set():
                # A file's frame is read and captured when it is played to the loop, not when it was
                # decoded ahead: the wait is neither staleness nor a hung read.
                now = self.clock()
                self._latest = replace(self._latest, captured_at=now)
                self.last_read_at = now
            self._seen.set()
            return self._latest

    def seconds_since_read(self) -> float:
        with self._lock:
            if self.pace_fps and not self._seen.is_set():  # a file's frame waiting for the loop is not a hung read
                return 0.0
            return self.clock() - self.last_read_at

    def retire(self) -> None:
        self.retired.set()
        try:
            self.capture.release()
        except cv2.error:  # releasing a broken stream must not stop reconnection
            pass


class LineTriggers:
    """Triggers the line sends (an OPC UA method call, an MQTT message), each with its part id, queued
    from the protocol's thread for the camera loop (thread-safe; `put` is the outputs' TriggerCallback)."""

    def __init__(self) -> None:
        self._parts: deque[str] = deque()
        self._lock = threading.Lock()

    def put(self, part_id: str) -> None:
        with self._lock:
            self._parts.append(clean_part_id(part_id))

    def take(self) -> str | None:
        """The oldest waiting trigger's part id ("" when it carried none), None when none waits."""
        with self._lock:
            return self._parts.popleft() if self._parts else None

    def peek(self) -> str | None:
        with self._lock:
            return self._parts[0] if self._parts else None


def clean_part_id(text: str) -> str:
    """A part id as stored and published: printable, trimmed, at most MAX_PART_ID_CHARS."""
    return "".join(ch for ch in str(text).strip() if ch.isprintable())[:MAX_PART_ID_CHARS]


class Trigger:
    """When to inspect: every new frame, every N seconds, on a line on stdin, a touched file, or a trigger
    from the line (OPC UA, MQTT). A stdin line and a line trigger carry the part id (`part_id` after
    `fired` returned True; "" when none)."""

    def __init__(self, config: CameraConfig, clock: Callable[[], float], stdin: Any = None,
                 line: LineTriggers | None = None) -> None:
        if config.trigger not in TRIGGERS:
            raise ConfigError(f"camera trigger {config.trigger!r}: use one of {', '.join(TRIGGERS)}")
        if config.trigger == "file" and not config.trigger_file:
            raise ConfigError("camera trigger 'file' needs --trigger-file")
        if config.trigger == "line" and line is None:
            raise ConfigError("camera trigger 'line' needs [lineout.opcua] or [lineout.mqtt] with triggers = true")
        self.kind = config.trigger
        self.config = config
        self.clock = clock
        self.line = line if line is not None else LineTriggers()
        self.part_id = ""
        self._last_fire = -float("inf")
        self.closed = False  # stdin reached end of file
        self._lock = threading.Lock()
        self._file_mtime = self._mtime() if self.kind == "file" else None
        if self.kind == "stdin":
            stream = stdin if stdin is not None else sys.stdin
            threading.Thread(target=self._read_lines, args=(stream,), name="camera-stdin", daemon=True).start()

    def _mtime(self) -> int | None:
        try:
            return os.stat(self.config.trigger_file).st_mtime_ns
        except FileNotFoundError:
            return None

    def _read_lines(self, stream: Any) -> None:
        for line in stream:  # each line is a trigger; its text, if any, the part id
            self.line.put(line if isinstance(line, str) else line.decode("utf-8", "replace"))
        with self._lock:
            self.closed = True

    def fired(self, new_frame: bool) -> bool:
        """Whether to inspect now (called once per loop turn)."""
        self.part_id = ""
        if self.kind == "every":
            return new_frame
        if self.kind == "interval":
            now = self.clock()
            if now - self._last_fire >= self.config.interval_seconds:
                self._last_fire = now
                return True
            return False
        if self.kind in ("stdin", "line"):
            part = self.line.take()
            if part is None:
                return False
            self.part_id = part
            return True
        mtime = self._mtime()
        if mtime is not None and mtime != self._file_mtime:
            self._file_mtime = mtime
            return True
        return False

    @property
    def exhausted(self) -> bool:
        with self._lock:
            closed = self.closed
        return self.kind == "stdin" and closed and self.line.peek() is None


def frame_fault(image: np.ndarray) -> str | None:
    """Why a frame cannot be inspected at all (its format), or None.

    The engine takes what the image decoder gives: 8-bit grey (HxW) or BGR (HxWx3). A 16-bit or
    4-channel frame is a camera set up unlike the bundle's boards: scaling or dropping a channel here
    would judge pixels the thresholds were never calibrated on, so it is reported instead.
    """
    if image.dtype != np.uint8:
        return f"{image.dtype.itemsize * 8}-bit frame ({image.dtype}): set the camera to 8-bit output"
    if image.ndim == 3 and image.shape[2] != 3:
        return f"{image.shape[2]}-channel frame: set the camera to grey or BGR output"
    if image.ndim not in (2, 3) or min(image.shape[:2]) < MIN_FRAME_SIDE:
        return f"frame of shape {tuple(image.shape)} is no picture of a board"
    return None


def frame_problem(image: np.ndarray) -> str | None:
    """Why a frame must not be scored (blank or black), or None; `frame_fault` first (this needs uint8)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if float(gray.mean()) < BLACK_MEAN:
        return "black frame"
    if float(gray.std()) < BLANK_STD:
        return "blank (near-constant) frame"
    return None
