"""How many times each claimed board has been tried, kept on disk so a crash counts too.

A board that takes the process down (a decoder crash, the kernel's OOM killer, a bug) would
otherwise be taken again first after every restart, forever. Before each try the runner adds one
to the board's counts in `<data_dir>/attempts.json` (written atomically and fsynced). A board left
in processing/ with a try on record is a suspect: it is tried again alone, and only tries alone
count against it (a crash in a batch cannot be pinned on one board, and a plain kill of the
service must not quarantine good boards). A board whose solo count has reached
`runner.max_attempts` is quarantined without another try. A board that settles (done/ or
quarantine/) leaves the journal.

Keys are the board's name in `processing/` (unique there), as JSON strings: names that are not
UTF-8 keep their surrogate escapes, which JSON writes as `\\udcXX` and reads back exactly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from inspector.atomic import NotDurable, atomic_write_text

log = logging.getLogger(__name__)

JOURNAL_FILE = "attempts.json"


class AttemptJournal:
    def __init__(self, data_dir: Path, max_attempts: int) -> None:
        self.path = Path(data_dir) / JOURNAL_FILE
        self.max_attempts = max(1, int(max_attempts))
        self._counts: dict[str, dict[str, int]] = self._load()

    def _load(self) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text(encoding="ascii"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a journal we cannot read must not stop the line
            log.error("%s: unreadable, starting a new one (%s)", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): {f: int(n) for f, n in v.items() if isinstance(n, int)}
                for k, v in data.items() if isinstance(v, dict)}

    def _save(self) -> None:
        try:
            atomic_write_text(self.path, json.dumps(self._counts, ensure_ascii=True, sort_keys=True), durable=True)
        except NotDurable as exc:  # counted, only not flushed: a power cut now could lose this one try
            log.error("%s", exc)

    def count(self, key: str) -> int:
        """Tries of this board alone."""
        entry = self._counts.get(key)
        return int(entry.get("attempts", 0)) if entry else 0

    def suspect(self, key: str) -> bool:
        """Tried before (alone or in a batch) and still in processing/."""
        entry = self._counts.get(key)
        return entry is not None and int(entry.get("tries", 0)) > 0

    def exhausted(self, key: str) -> bool:
        return self.count(key) >= self.max_attempts

    def begin(self, keys: list[str]) -> None:
        """One more try of each board, on disk before the try starts (a try alone also counts)."""
        for key in keys:
            entry = self._counts.setdefault(key, {"attempts": 0, "tries": 0})
            entry["tries"] = int(entry.get("tries", 0)) + 1
            if len(keys) == 1:
                entry["attempts"] = int(entry.get("attempts", 0)) + 1
        if keys:
            self._save()

    def undo(self, keys: list[str]) -> None:
        """Take back the try just begun (a store outage is not the board's fault)."""
        for key in keys:
            entry = self._counts.get(key)
            if entry:
                for field in ("attempts", "tries") if len(keys) == 1 else ("tries",):
                    entry[field] = max(0, int(entry.get(field, 0)) - 1)
        if keys:
            self._save()

    def settle_gone(self, keys: list[str], processing: Path) -> None:
        """Forget the boards of this batch that have left processing/ (one write for the batch)."""
        gone = [key for key in keys if key in self._counts and not os.path.lexists(processing / key)]
        for key in gone:
            del self._counts[key]
        if gone:
            self._save()

    def settled(self, key: str) -> None:
        if self._counts.pop(key, None) is not None:
            self._save()

    def forget_missing(self, present: set[str]) -> None:
        """Drop entries of boards no longer in processing/ (settled before a crash saved it)."""
        stale = set(self._counts) - present
        for key in stale:
            del self._counts[key]
        if stale:
            self._save()
