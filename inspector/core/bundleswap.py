"""Change a bundle as one step: build the new version beside it, then switch the two folders.

Recalibration rewrites three files (calibration.json, selftest.npz, manifest.json); replaced one
after another, an interruption in between leaves a manifest that no longer matches and a bundle the
runner refuses. Instead the whole bundle is copied into a hidden sibling folder, changed there,
flushed to disk, and the two folders are exchanged with one `renameat2(RENAME_EXCHANGE)` (Linux):
a reader, or a restart after a power cut, sees the old bundle or the new one, never a mix. Where
the exchange is not available, the old folder is renamed aside and the new one into place; a
crash between those two renames leaves the complete old bundle beside the path (`<name>.previous-*`),
named in the error of the next load attempt's missing folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from inspector.atomic import fsync_dir

RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            handle = os.open(path, os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
    fsync_dir(folder)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False where unsupported."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE)
    if result != 0:
        errno = ctypes.get_errno()
        if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot
            return False
        raise OSError(errno, os.strerror(errno), str(first))
    return True


@contextmanager
def staged_bundle(bundle: Path, switch: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """Yield a full copy of `bundle` to change; on a clean exit it replaces `bundle` in one step.

    An exception inside the block leaves `bundle` untouched and removes the copy.
    """
    bundle = Path(bundle).resolve()
    staging = bundle.parent / f".{bundle.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(bundle, staging)
    try:
        yield staging
        _fsync_tree(staging)
        fsync_dir(bundle.parent)
        (switch or switch_folders)(staging, bundle)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after the switch it holds the old version


def switch_folders(new: Path, current: Path) -> None:
    """Put `new` at `current`'s path; the old contents end up at `new`'s path."""
    if not _exchange(new, current):
        aside = current.parent / f"{current.name}.previous-{os.getpid()}"
        os.rename(current, aside)
        os.rename(new, current)
        os.rename(aside, new)
    fsync_dir(current.parent)
