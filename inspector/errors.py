"""One family of errors the product raises on purpose.

The CLI turns any InspectorError into a single `error: ...` line and a non-zero exit; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class InspectorError(Exception):
    """Base class: a clear, user-facing failure (bad input, bad bundle, unavailable store...)."""


class ImageLoadError(InspectorError):
    """An image file could not be turned into pixels. Names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BundleError(InspectorError):
    """A model bundle is missing, incomplete, edited or inconsistent."""


class ConfigError(InspectorError):
    """A configuration value or file is invalid."""


class StoreError(InspectorError):
    """The results store cannot be reached or written."""


class StoreUnavailable(StoreError):
    """The store is out of reach (server down, network cut, file locked past the retries): the
    request itself was fine, so the feeds hold their boards and retry instead of giving up."""


class CameraError(InspectorError):
    """A camera source cannot be opened or read."""


class OutputError(InspectorError):
    """An output file (overlay, heatmap, report) could not be written. Names the file and the reason."""


class DatasetError(InspectorError):
    """A labelled data set (MVTec-AD layout) is incomplete or inconsistent. Names the file and the problem."""


class RegistrationError(InspectorError):
    """A board that cannot be aligned to the reference: an error verdict with this reason.

    `Inspector.inspect_each` returns it in the board's place; the feeds turn it into an error verdict."""
