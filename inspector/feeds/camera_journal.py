"""The camera's journal and the records of a trigger: what keeps every trigger's answer through an
outage, a kill -9 or a power cut (the loop itself is in camera.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from inspector.atomic import atomic_write_bytes, fsync_dir
from inspector.feeds.capture import Frame

log = logging.getLogger(__name__)

JOURNAL_FOLDER = "camera-unstored"
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class Shot:
    """One trigger: the frame the camera had (if any) and when the trigger fired."""

    frame: Frame | None
    trigger_id: str  # "<station>-<UTC time to the microsecond>-<frame sequence number>": names its files
    started: float  # on the feed's clock
    part_id: str = ""  # what the trigger called the part (OPC UA, MQTT, a stdin line); "" when nothing


@dataclass(frozen=True)
class Answer:
    """A trigger's `error` row: why its frame was not inspected (kept in the journal while the store is away)."""

    digest: str
    name: str
    source_path: str
    image_path: str
    reason: str
    part_id: str = ""

    @classmethod
    def for_trigger(cls, trigger_id: str, tail: str, seq: int, image_path: str, reason: str, part_id: str) -> Answer:
        """The answer to trigger `trigger_id` (its frame `seq`): one digest per trigger (answer_digest), named
        `<trigger id>-<tail>`."""
        return cls(answer_digest(trigger_id), f"{trigger_id}-{tail}", f"camera:{seq}", image_path, reason, part_id)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Answer:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class Held:
    """A journal entry waiting for the store: a frame (.png) to inspect or an answer (.json) to store."""

    path: Path
    seq: int
    started: float
    part_id: str = ""


def answer_digest(trigger_id: str) -> str:
    """The input digest of a trigger's answer without a verdict: one per trigger, never per frame.

    The store keeps one row per (input digest, model): twenty identical black frames digested by their
    bytes would share one row, and nineteen triggers would go unanswered. The trigger id (station, the
    trigger's UTC time to the microsecond, strictly increasing within a run and later after a restart,
    and the frame's sequence number) names the trigger itself; an answer replayed from the journal keeps
    its digest, so a retry never makes a second row, and the line can drop repeats by its verdict_id.
    """
    return hashlib.sha256(f"camera trigger\0{trigger_id}".encode()).hexdigest()


def entry_seq(name: str) -> int:
    """The frame sequence number in a journal entry's name (`<trigger id>-<tail>`), 0 when unreadable."""
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


class Journal:
    """`camera-unstored/`: each trigger's frame or answer until its row is committed.

    Entries are written durably (file and folder fsynced) before the store is asked, so after a kill -9
    or a power cut every trigger is stored or still here. Names start with the trigger id, whose UTC
    time orders them: sorted names are the triggers' order.
    """

    def __init__(self, folder: Path, frames_dir: Path) -> None:
        self.folder = folder
        self.frames_dir = frames_dir
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, data: bytes, part_id: str = "") -> Path:
        """A frame (.png) or an answer (.json); a frame's part id in a `.part` file beside it, written first
        (an answer keeps its own in its JSON)."""
        if part_id and name.endswith(".png"):
            atomic_write_bytes(self.folder / f"{name}{PART_SUFFIX}", part_id.encode("utf-8"), durable=True)
        return atomic_write_bytes(self.folder / name, data, durable=True)

    def part_of(self, entry: Path) -> str:
        """The part id journalled with a frame ("" when its trigger carried none)."""
        try:
            return (entry.parent / f"{entry.name}{PART_SUFFIX}").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def entries(self) -> list[Path]:
        """What the last run left, oldest first. A write a kill cut short (a temporary name) goes: its
        trigger never reached the store and the frame in it is not whole."""
        found = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
            elif path.suffix in (".png", ".json") and path.is_file():
                found.append(path)
        return found

    def final(self, entry: Path) -> Path:
        """Where a frame lives once its row is committed (the row points there from the start)."""
        return self.frames_dir / entry.name

    def settle(self, entry: Path) -> None:
        """After the row's commit: a frame moves to camera/, an answer goes. Fsynced, so a power cut cannot
        bring the entry back; if it does come back, its replay finds the row and only settles it again."""
        try:
            if entry.suffix == ".png":
                os.replace(entry, self.final(entry))
                fsync_dir(self.frames_dir)
                (entry.parent / f"{entry.name}{PART_SUFFIX}").unlink(missing_ok=True)
            else:
                entry.unlink(missing_ok=True)
            fsync_dir(self.folder)
        except OSError as exc:  # the row is stored: the next start settles the entry
            log.error("%s: stored, but left in %s (%s)", entry.name, self.folder, exc.strerror or exc)
