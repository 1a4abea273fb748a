"""The trigger messages an MQTT output takes (inspector/feeds/mqtt_out.py, topic `<prefix>/<station>/trigger`):
a part id, plain UTF-8 or JSON `{"part_id": "..."}`, checked before it reaches the feed."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

MAX_TRIGGER_BYTES = 1024  # a part id with room to spare; anything larger is not a trigger
MAX_PART_ID_CHARS = 256


def parse_trigger(payload: bytes) -> tuple[str, str | None]:
    """(part id, None) from a trigger message, or ("", why it is refused). The payload is a plain UTF-8 part
    id or JSON `{"part_id": "..."}`; empty (or no part_id) is a trigger without a part id."""
    if len(payload) > MAX_TRIGGER_BYTES:
        return "", f"payload of {len(payload)} bytes (at most {MAX_TRIGGER_BYTES})"
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "", "payload is not UTF-8"
    part_id, problem = _part_id_from_json(text) if text.startswith("{") else (text, None)
    if problem is not None:
        return "", problem
    problem = _part_id_problem(part_id)
    return ("", problem) if problem is not None else (part_id, None)


def _part_id_from_json(text: str) -> tuple[str, str | None]:
    """(part id, None) from a JSON trigger, or ("", why not)."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        return "", f"payload starts like JSON but is not ({exc})"
    if not isinstance(message, dict):
        return "", "JSON payload is not an object"
    part_id: Any = message.get("part_id")
    if part_id is None:
        part_id = ""
    elif isinstance(part_id, int) and not isinstance(part_id, bool):
        part_id = str(part_id)  # PLCs often count parts
    elif not isinstance(part_id, str):
        return "", f"part_id must be a string or an integer, got {type(part_id).__name__}"
    return part_id.strip(), None


def _part_id_problem(part_id: str) -> str | None:
    """Why a part id is refused, or None."""
    if len(part_id) > MAX_PART_ID_CHARS:
        return f"part id of {len(part_id)} characters (at most {MAX_PART_ID_CHARS})"
    if any(unicodedata.category(char) == "Cc" for char in part_id):
        return "part id holds control characters"  # it lands in logs, rows and file contents
    return None
