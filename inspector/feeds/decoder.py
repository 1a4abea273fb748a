"""Decoding under a time and memory guard: a decoder that hangs or allocates past a cap is ended.

OpenCV's codecs run in C: no Python timeout can stop a decode stuck in libtiff, and a file the
header checks let through can still ask a codec for GiBs. So the folder runner decodes in a worker
process (`inspector.feeds.decode_worker`: the same `decode_image`, every header check included)
whose address space is capped at its start-up footprint + `runner.decode_memory_mb`, and waits at
most `runner.decode_timeout_seconds` for each board's pixels:

* a decode past the time limit: the worker is killed (SIGKILL) and the board gets an `ImageLoadError`
  naming the limit; the next board gets a fresh worker;
* a decode past the memory cap: the allocation fails inside the worker, which says so and exits;
  the board gets an `ImageLoadError` naming the cap;
* a worker that dies (a codec's segfault, the OOM killer): tried once more with a fresh worker, so
  a stray kill never costs a board; a second death is the board's `ImageLoadError`;
* a worker that cannot start at all raises `DecoderUnavailable`: the installation is at fault, not a
  board, and the runner stops with its boards kept.

The worker dies with the runner (PR_SET_PDEATHSIG), ignores the terminal's and systemd's stop
signals (the runner finishes its board, then closes the socket), and `close()` ends it.
Cost on a 640x640 colour PNG: see docs/line-guide.md ("Decoding under a guard").
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO

import numpy as np

from inspector.errors import ConfigError, ImageLoadError, InspectorError
from inspector.feeds.decode_worker import MAX_REASON_BYTES, OUT_OF_MEMORY, PIXELS, READY, REFUSED, REPLY, REQUEST

log = logging.getLogger(__name__)

WORKER_MODULE = "inspector.feeds.decode_worker"  # a module with `main(argv)`; tests name one with a faulty codec
START_TIMEOUT_SECONDS = 30.0  # a cold disk can take a while to load numpy and OpenCV
STOP_TIMEOUT_SECONDS = 2.0
MIN_MEMORY_MB = 16
_MAX_U64 = (1 << 64) - 1

# `-I`: neither PYTHONPATH nor the working directory (an inbox, perhaps) decides what the worker
# imports; it imports the runner's own `inspector` package from ROOT.
_BOOT = "import importlib, sys; sys.path.insert(0, sys.argv[1]); importlib.import_module(sys.argv[2]).main(sys.argv[3:])"
_ROOT = Path(__file__).resolve().parents[2]
_WORKER_ENV = {
    # One thread: no pool threads or per-thread malloc arenas swell the capped address space.
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1",
}


class DecoderUnavailable(InspectorError):
    """The decoding worker cannot be started: the installation, not a board, is at fault."""


class _Refused(Exception):
    def __init__(self, reason: str, out_of_memory: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.out_of_memory = out_of_memory


class _Died(Exception):
    """The worker ended, or answered what no worker of ours sends."""


class GuardedDecoder:
    """`decode_image` in a worker process, with a per-image time limit and a memory cap.

    One caller at a time (a lock serialises them). The worker starts on `start()` or the first
    `decode`, and ends on `close()` (also at interpreter exit, should `close()` be missed).
    """

    def __init__(self, timeout_seconds: float = 10.0, memory_mb: int = 2048) -> None:
        if not timeout_seconds > 0:
            raise ConfigError(f"runner.decode_timeout_seconds must be above 0, got {timeout_seconds}")
        if memory_mb < MIN_MEMORY_MB:
            raise ConfigError(f"runner.decode_memory_mb must be at least {MIN_MEMORY_MB}, got {memory_mb}")
        self.timeout_seconds = float(timeout_seconds)
        self.memory_mb = int(memory_mb)
        self._worker: _Worker | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None before the first start and after `close`)."""
        return self._worker.proc.pid if self._worker is not None else None

    def start(self) -> None:
        """Start the worker now (the runner does, so an installation that cannot is a start-up error)."""
        with self._lock:
            self._running()

    def decode(self, data: bytes, name: str, *, max_pixels: int) -> np.ndarray:
        """`decode_image(data, name, max_pixels=...)` in the worker; `ImageLoadError(name, reason)` otherwise."""
        if len(data) >= self.memory_mb << 20:
            raise ImageLoadError(name, f"the file alone ({len(data)} bytes) is over the decoder's memory cap of "
                                       f"{self.memory_mb} MiB (runner.decode_memory_mb)")
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._exchange(data, max_pixels)
                except _Died as died:
                    if attempt == 2:
                        raise ImageLoadError(name, f"the decoder crashed on it twice ({died})") from None
                    log.warning("%s: the decoding worker ended (%s); trying once more with a fresh one", name, died)
                except TimeoutError:
                    raise ImageLoadError(name, self._timeout_reason()) from None
                except _Refused as refused:
                    raise ImageLoadError(name, self._refusal_reason(refused)) from None
        raise AssertionError("unreachable: the second try returns or raises")

    def close(self) -> None:
        """End the worker (idempotent); a later `decode` would start a new one."""
        with self._lock:
            self._discard(kill=False)

    def __enter__(self) -> GuardedDecoder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ internals
    def _exchange(self, data: bytes, max_pixels: int) -> np.ndarray:
        """One decode: `_Died` after discarding a dead worker, `TimeoutError` / `_Refused` as said."""
        worker = self._running()
        try:
            return worker.decode(data, max_pixels, time.monotonic() + self.timeout_seconds)
        except _Refused as refused:
            if refused.out_of_memory:
                self._discard(kill=False)  # it exits by itself after saying so
            raise
        except BaseException:
            # Past the time limit, dead, or an exchange cut short (a MemoryError here): either way its
            # socket is out of step with the next request, so it goes.
            self._discard(kill=True)
            raise

    def _timeout_reason(self) -> str:
        return (f"decoding took longer than {self.timeout_seconds:g} s (runner.decode_timeout_seconds); "
                "the decoder was stopped")

    def _refusal_reason(self, refused: _Refused) -> str:
        if refused.out_of_memory:
            return f"{refused.reason}; the decoder may use {self.memory_mb} MiB (runner.decode_memory_mb)"
        return refused.reason

    def _running(self) -> _Worker:
        if self._worker is None:
            self._worker = _Worker.start(self.memory_mb << 20)
        return self._worker

    def _discard(self, kill: bool) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(kill)


class _Worker:
    """One worker process and the runner's end of its socket."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, log_file: IO[bytes]) -> None:
        self.proc = proc
        self.sock = sock
        self.log_file = log_file  # the worker's stdout and stderr: read back when it dies
        weakref.finalize(self, _kill, proc)  # no orphan, even if nobody calls stop()

    @classmethod
    def start(cls, budget: int) -> _Worker:
        ours, theirs = socket.socketpair()
        log_file = tempfile.TemporaryFile()
        command = [sys.executable, "-I", "-c", _BOOT, str(_ROOT), WORKER_MODULE, str(theirs.fileno()), str(budget),
                   str(os.getpid())]
        try:
            proc = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log_file,
                                    stderr=log_file, env={**os.environ, **_WORKER_ENV}, start_new_session=True)
        except OSError as exc:
            ours.close()
            log_file.close()
            raise DecoderUnavailable(f"the decoding worker cannot be started ({exc})") from exc
        finally:
            theirs.close()
        worker = cls(proc, ours, log_file)
        worker._await_ready()
        return worker

    def _await_ready(self) -> None:
        try:
            status, text = self._receive_text(time.monotonic() + START_TIMEOUT_SECONDS)
        except (TimeoutError, _Died) as exc:
            problem = str(exc) if isinstance(exc, _Died) else f"no answer within {START_TIMEOUT_SECONDS:g} s"
            words = self.last_words()
            self.stop(kill=True)
            raise DecoderUnavailable(f"the decoding worker did not start: {problem}"
                                     + (f" ({words})" if words else "")) from None
        if status != READY:
            self.stop(kill=True)
            raise DecoderUnavailable(f"the decoding worker did not start (it answered {status})")
        if "no memory cap" in text:
            log.warning("decoding worker: %s; only the time limit guards decoding", text)

    def decode(self, data: bytes, max_pixels: int, deadline: float) -> np.ndarray:
        self._send(REQUEST.pack(len(data), min(max_pixels, _MAX_U64)), deadline)
        self._send(data, deadline)
        status, channels, height, width, size = REPLY.unpack(self._receive(REPLY.size, deadline))
        if status == PIXELS:
            pixels = _pixels_for(channels, height, width, size, max_pixels)
            self._receive_into(pixels.reshape(-1).data, deadline)
            return pixels
        if status in (REFUSED, OUT_OF_MEMORY) and size <= MAX_REASON_BYTES:
            raise _Refused(self._receive(size, deadline).decode("utf-8", "replace"), status == OUT_OF_MEMORY)
        raise _Died(f"it answered status {status} with {size} bytes")

    def _receive_text(self, deadline: float) -> tuple[int, str]:
        status, _, _, _, size = REPLY.unpack(self._receive(REPLY.size, deadline))
        if size > MAX_REASON_BYTES:
            raise _Died(f"it answered status {status} with {size} bytes")
        return status, self._receive(size, deadline).decode("utf-8", "replace")

    def _send(self, data: bytes, deadline: float) -> None:
        try:
            self.sock.settimeout(_remaining(deadline))
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _Died(self._ending()) from exc

    def _receive(self, size: int, deadline: float) -> bytes:
        buffer = bytearray(size)
        self._receive_into(memoryview(buffer), deadline)
        return bytes(buffer)

    def _receive_into(self, view: memoryview, deadline: float) -> None:
        got = 0
        while got < len(view):
            self.sock.settimeout(_remaining(deadline))
            try:
                count = self.sock.recv_into(view[got:])
            except ConnectionResetError as exc:
                raise _Died(self._ending()) from exc
            if count == 0:
                raise _Died(self._ending())
            got += count

    def _ending(self) -> str:
        """How the worker ended, once it has (it closed its socket by dying or by exiting)."""
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            return "it closed its socket and did not exit"
        if code < 0:
            return f"killed by {_signal_name(-code)}"
        words = self.last_words()
        return f"exited with status {code}" + (f": {words}" if words else "")

    def last_words(self) -> str:
        """The last line the worker wrote (a traceback's last line, a codec's complaint)."""
        try:
            size = os.fstat(self.log_file.fileno()).st_size
            tail = os.pread(self.log_file.fileno(), 1024, max(0, size - 1024)).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def stop(self, kill: bool) -> None:
        self.sock.close()  # an idle worker reads end-of-file and exits
        if kill:
            self.proc.kill()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
        self.log_file.close()


def _pixels_for(channels: int, height: int, width: int, size: int, max_pixels: int) -> np.ndarray:
    """The array a PIXELS reply fills, after checking its shape is one `decode_image` can return."""
    if channels not in (1, 3) or not 0 < height * width <= max_pixels or size != height * width * channels:
        raise _Died(f"it answered a {width}x{height}x{channels} image in {size} bytes")
    return np.empty((height, width) if channels == 1 else (height, width, 3), dtype=np.uint8)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
