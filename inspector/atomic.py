"""The one write-then-rename helper: readers (and a restart after a kill) never see half a file.

Every file the product replaces in place (calibration.json, selftest.npz, overlays, camera frames,
evaluation JSON, training checkpoints) is written through `atomic_write`: a temporary file in the
same folder, then `os.replace`. With `durable=True` the data and the folder entry are also flushed
to disk, so a power cut leaves the old file or the new one, never an empty one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class NotDurable(OSError):
    """The file is in place with its new content, but its folder could not be flushed: a power cut could
    still bring the old one back. Callers that can live with that say so and go on."""


# Filesystems that cannot open or flush a folder say so with these; the rename is still atomic there.
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EISDIR})


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into or out of it) to disk. A filesystem that does not support
    it is skipped; a real failure (EIO, ENOSPC...) raises OSError: the caller decides, nothing is
    silently assumed durable."""
    try:
        handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return
        raise
    try:
        os.fsync(handle)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, mode: int = 0o644,
                 durable: bool = False) -> Path:
    """Create or replace `path` with what `write` puts into the binary stream it is given.

    `mode` is applied before the rename (mkstemp's 0600 would hide the file from other users, such
    as the runner's). Raises OSError; the temporary file never outlives a failure.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{_temporary_stem(path.name)}.", suffix=".tmp", dir=path.parent)
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
        try:
            fsync_dir(path.parent)
        except OSError as exc:
            raise NotDurable(exc.errno or 0, f"{path}: written, but its folder could not be flushed to disk "
                                             f"({exc.strerror or exc})") from exc
    return path


TEMPORARY_STEM_BYTES = 200  # + "." + mkstemp's 8 characters + ".tmp" stays under the 255-byte name limit


def _temporary_stem(name: str) -> str:
    """The temporary file's name starts with the target's, cut to fit: a target name near the 255-byte
    limit must not fail for its temporary file's longer one."""
    raw = os.fsencode(name)
    if len(raw) <= TEMPORARY_STEM_BYTES:
        return name
    return os.fsdecode(raw[:TEMPORARY_STEM_BYTES].decode("utf-8", "ignore").encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> Path:
    return atomic_write(path, lambda stream: stream.write(data), durable=durable)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)
