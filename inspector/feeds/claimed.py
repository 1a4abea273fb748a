"""A board the folder runner has claimed (in processing/), and how a failure it causes reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.errors import ImageLoadError, InspectorError
from inspector.feeds.safeio import display_name


@dataclass
class Claimed:
    path: Path  # in processing/
    name: str  # original name in the inbox
    data: bytes = b""
    digest: str = ""
    image: np.ndarray | None = None
    claimed_at: float = 0.0

    @property
    def shown(self) -> str:
        """The name as stored, published and logged (undecodable bytes and control characters escaped)."""
        return display_name(self.name)


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, InspectorError) else f"{type(exc).__name__}: {exc}"


def failure_reason(item: Claimed, exc: BaseException) -> str:
    if isinstance(exc, ImageLoadError):
        return str(exc)
    return f"{item.shown}: cannot be taken ({describe(exc)})"


def original_name(path: Path) -> str:
    """The inbox name of a file in processing/ (a collision there got a "<ns>-" prefix)."""
    head, _, rest = path.name.partition("-")
    return rest if head.isdigit() and len(head) >= 18 and rest else path.name


# What ONNX Runtime, NumPy and OpenCV say when memory runs out: the PC's state, not the board's.
_OUT_OF_MEMORY = ("failed to allocate memory", "bad_alloc", "out of memory", "cannot allocate memory",
                  "insufficient memory")


def is_passing_fault(exc: BaseException) -> bool:
    """A fault that says nothing about the board (out of memory): try again rather than quarantine."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OUT_OF_MEMORY)


def passing_fault_digest(digest: str) -> str:
    """A row key for a board given up on for a passing fault, unique to this attempt, never equal to the
    bytes' digest: `find_inspection` does not take the board for a known bad one when it comes again."""
    import hashlib
    import time

    return hashlib.sha256(f"passing-fault\0{digest}\0{time.time_ns()}".encode()).hexdigest()
