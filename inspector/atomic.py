"""The one write-then-rename helper: readers (and a restart after a kill) never see half a file.

Every file the product replaces in place (calibration.json, selftest.npz, overlays, camera frames,
evaluation JSON, training checkpoints) is written through `atomic_write`: a temporary file in the
same folder, then `os.replace`. With `durable=True` the data and the folder entry are also flushed
to disk, so a power cut leaves the old file or the new one, never an empty one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into or out of it) to disk; a no-op where unsupported."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems cannot open a folder: the rename is still atomic
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, mode: int = 0o644,
                 durable: bool = False) -> Path:
    """Create or replace `path` with what `write` puts into the binary stream it is given.

    `mode` is applied before the rename (mkstemp's 0600 would hide the file from other users, such
    as the runner's). Raises OSError; the temporary file never outlives a failure.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    return atomic_write(path, lambda stream: stream.write(data), durable=durable)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)
