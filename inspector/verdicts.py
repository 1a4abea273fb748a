"""The verdicts, one type for the engine and the store.

The engine decides `Verdict` for every board it could judge; the store records a `StoredVerdict`:
the engine's, or "error" for a board that could not be judged (unreadable, not aligned).
"""

from __future__ import annotations

from typing import Literal

Verdict = Literal["pass", "fail", "review"]
StoredVerdict = Literal[Verdict, "error"]

VERDICTS: tuple[StoredVerdict, ...] = ("pass", "fail", "review", "error")
FLAGGED_VERDICTS: tuple[Verdict, ...] = ("fail", "review")  # what operators review
