"""A decoding worker whose codec misbehaves on marked files, for tests of the decode guard.

The production worker's loop (`inspector.feeds.decode_worker.main`) with another decode function:
a file ending in HANG never returns (a codec stuck in a loop), one ending in CRASH takes the
process down with SIGSEGV, anything else decodes as in production. Tests select it with
`monkeypatch.setattr(inspector.feeds.decoder, "WORKER_MODULE", "tests.faulty_decode_worker")`, so
the production worker carries no test hook.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from inspector.feeds import decode_worker

HANG = b"<hang-the-decoder>"
CRASH = b"<crash-the-decoder>"


def decode(data: bytearray, max_pixels: int) -> np.ndarray:
    tail = bytes(data[-64:])
    if HANG in tail:
        while True:  # only SIGKILL ends this: the worker ignores SIGTERM and SIGINT
            time.sleep(0.05)
    if CRASH in tail:
        os.kill(os.getpid(), signal.SIGSEGV)
    return decode_worker.decode(data, max_pixels)


def main(argv: list[str]) -> None:
    decode_worker.main(argv, decode)
