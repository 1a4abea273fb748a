"""The decoding worker: `decode_image` in a process of its own, under an address-space cap.

`inspector.feeds.decoder.GuardedDecoder` starts it as
`python -I -c BOOT ROOT inspector.feeds.decode_worker SOCKET_FD BUDGET_BYTES PARENT_PID` and it answers
one request at a time on the socket until the parent closes it. It opens no file: the parent reads
the board and gets back pixels or a reason. Messages are fixed structs and raw bytes, never pickles,
so a worker a hostile file managed to corrupt can send the runner nothing but pixels or text.

    request: REQUEST (encoded size, max_pixels), then the encoded bytes
    reply:   REPLY (status, channels, height, width, size), then `size` bytes: the pixels (PIXELS) or
             a UTF-8 reason (READY, REFUSED, OUT_OF_MEMORY)
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import struct
from collections.abc import Callable

import cv2
import numpy as np

from inspector.core.imageio import DecodeOutOfMemory, decode_image
from inspector.errors import ImageLoadError

REQUEST = struct.Struct("<QQ")
REPLY = struct.Struct("<BBIIQ")
READY, PIXELS, REFUSED, OUT_OF_MEMORY = range(4)
MAX_REASON_BYTES = 4096

Decode = Callable[[bytearray, int], np.ndarray]

_PR_SET_PDEATHSIG = 1
_OPENCV_LOG_TAIL = 2048
_LOG_PREFIX = re.compile(r"^\[\s*\w+:\d+@[\d.]+\]\s*(global\s+)?(\S+\.cpp:\d+\s+\w+\s+)?")
# OpenCV catches a codec's failed allocation and only logs it: its own as "Insufficient memory", a
# std::bad_alloc from a codec's buffers (a TIFF strip, a PNG chunk) as an "unknown exception".
_NO_MEMORY = re.compile(r"Insufficient memory|Failed to allocate|bad_alloc|[Oo]ut of memory|Cannot allocate memory|"
                        r"unknown exception")


def decode(data: bytearray, max_pixels: int) -> np.ndarray:
    """The production decode: every header check of `decode_image`, then OpenCV."""
    return decode_image(data, "<worker>", max_pixels=max_pixels)


def main(argv: list[str], decode: Decode = decode) -> None:
    """Serve decode requests on the socket `argv[0]`, within `argv[1]` bytes more than the start-up footprint."""
    sock = socket.socket(fileno=int(argv[0]))
    _die_with_parent(int(argv[2]))
    # Ctrl-C and systemd's stop reach every process of the group; the runner finishes the board in
    # hand, then closes the socket, which is what ends this worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one core: the runner's model has the other, and no pool threads inflate the cap
    _warm_up()
    capped = _cap_address_space(int(argv[1]))
    try:
        _send_text(sock, READY, "memory capped" if capped else "no memory cap on this platform")
        _serve(sock, decode)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the runner is gone


def _serve(sock: socket.socket, decode: Decode) -> None:
    while (request := _receive_request(sock)) is not None:
        data, max_pixels = request
        _forget_opencv_log()
        try:
            pixels = np.ascontiguousarray(decode(data, max_pixels), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - whatever a file causes is that file's reason
            status, reason = _failure(exc)
            _send_text(sock, status, reason)
            if status == OUT_OF_MEMORY:
                return  # a fresh worker replaces one that ran out: nothing half-allocated lingers
            continue
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        sock.sendall(REPLY.pack(PIXELS, channels, pixels.shape[0], pixels.shape[1], pixels.nbytes))
        sock.sendall(pixels.reshape(-1).data)


def _receive_request(sock: socket.socket) -> tuple[bytearray, int] | None:
    header = bytearray(REQUEST.size)
    if not _receive_into(sock, memoryview(header)):
        return None
    size, max_pixels = REQUEST.unpack(header)
    data = bytearray(size)
    return (data, max_pixels) if _receive_into(sock, memoryview(data)) else None


def _receive_into(sock: socket.socket, view: memoryview) -> bool:
    """Fill `view`; False when the parent closed the socket (its way of saying stop)."""
    got = 0
    while got < len(view):
        count = sock.recv_into(view[got:])
        if count == 0:
            return False
        got += count
    return True


def _send_text(sock: socket.socket, status: int, text: str) -> None:
    payload = text.encode("utf-8", "replace")[:MAX_REASON_BYTES]
    sock.sendall(REPLY.pack(status, 0, 0, 0, len(payload)) + payload)


def _failure(exc: Exception) -> tuple[int, str]:
    """The reply status and reason for a failed decode, with what OpenCV logged when it only said no."""
    complaint = _opencv_complaint()
    reason = exc.reason if isinstance(exc, ImageLoadError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DecodeOutOfMemory):
        return OUT_OF_MEMORY, reason
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY, "decoding needs more memory than it may have (MemoryError)"
    if _NO_MEMORY.search(complaint):
        return OUT_OF_MEMORY, f"decoding needs more memory than it may have ({complaint})"
    if complaint and reason.endswith("OpenCV could not decode it"):
        reason = f"{reason} ({complaint})"
    return REFUSED, reason


def _forget_opencv_log() -> None:
    # fd 2 is a file the parent made: emptied before each decode, so what is in it is this file's.
    try:
        os.ftruncate(2, 0)
        os.lseek(2, 0, os.SEEK_SET)
    except OSError:
        pass  # a terminal or a pipe when run by hand: no complaint is read back then


def _opencv_complaint() -> str:
    try:
        size = os.fstat(2).st_size
        tail = os.pread(2, _OPENCV_LOG_TAIL, max(0, size - _OPENCV_LOG_TAIL)).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return _LOG_PREFIX.sub("", lines[-1])[:300] if lines else ""


def _die_with_parent(parent: int) -> None:
    """Killed with the runner, even in the middle of a decode that never returns (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # no prctl: an idle worker still ends when the runner's end of the socket closes
    if os.getppid() != parent:
        os._exit(0)  # the runner died before the line above took effect


def _warm_up() -> None:
    # The codecs' first use allocates their tables: inside the footprint the cap is counted from.
    for suffix in (".png", ".jpg"):
        ok, encoded = cv2.imencode(suffix, np.zeros((16, 16, 3), np.uint8))
        if ok:
            decode_image(encoded.tobytes(), "<warm-up>")


def _cap_address_space(budget: int) -> bool:
    """RLIMIT_AS = the footprint now (interpreter, numpy, OpenCV) + `budget`; False where it cannot be set."""
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as stream:
            used = int(stream.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = used + budget if hard == resource.RLIM_INFINITY else min(used + budget, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, OSError, ValueError):
        return False
    return True
