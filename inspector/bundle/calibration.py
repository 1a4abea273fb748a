"""calibration.json: the bundle's threshold versions, read by the engine and written by calibration.

Computing thresholds is `inspector.core.calibration`; this module only owns the file, so reader and
writer cannot disagree about its shape.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inspector.atomic import atomic_write_text
from inspector.errors import BundleError


def read_calibration(path: Path) -> list[dict[str, Any]]:
    """All calibration versions of a bundle, oldest first; BundleError naming the file if malformed."""
    try:
        versions = json.loads(Path(path).read_text())["versions"]
        for entry in versions:
            float(entry["image_threshold"]), float(entry["pixel_threshold"]), int(entry["version"])
            float(entry["normaliser"]["pixel_scale"])
    except FileNotFoundError as exc:
        raise BundleError(f"{path}: calibration file missing") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: malformed calibration ({exc!r})") from exc
    if not versions:
        raise BundleError(f"{path}: holds no calibration version")
    return sorted(versions, key=lambda entry: int(entry["version"]))


def new_version(versions: list[dict[str, Any]], figures: dict[str, Any], *, reason: str, author: str) -> dict[str, Any]:
    number = max((int(v["version"]) for v in versions), default=0) + 1
    return {"version": number, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "author": author, "reason": reason, **figures}


def write_calibration(path: Path, versions: list[dict[str, Any]]) -> None:
    """Replace calibration.json atomically (a crash leaves the old file, never half a file)."""
    atomic_write_text(path, json.dumps({"versions": versions}, indent=2) + "\n", durable=True)
