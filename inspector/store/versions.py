"""Append-only numbered versions (thresholds, learned tolerances): the next number, taken again when a
concurrent writer took it first (the unique (model, version) key refuses the second)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inspector.errors import StoreError

T = TypeVar("T")
VERSION_ATTEMPTS = 5


def append_version(write: Callable[[Callable[[Session], T], str], T], work: Callable[[Session], T], what: str,
                   subject: str) -> T:
    """Run `work` (which numbers the new version) through the store's `write`, numbering again on a clash."""
    for _ in range(VERSION_ATTEMPTS):
        try:
            return write(work, what)
        except IntegrityError:
            continue  # a concurrent change took this version number: number again
    raise StoreError(f"{subject}: version kept colliding, try again")
