"""Store outages for runner and camera tests: chosen calls of `Store` methods fail as unreachable."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from inspector.errors import StoreUnavailable
from inspector.store import Store


def unreachable_on(monkeypatch: pytest.MonkeyPatch, names: Sequence[str], fails: Callable[[int], bool],
                   what: str = "write failed") -> dict[str, int]:
    """Patch `names` so that call number n (counted over all of them, from 1) raises StoreUnavailable
    when `fails(n)`; the returned {"count": n} says how many calls were made."""
    calls = {"count": 0}
    for name in names:
        original = getattr(Store, name)

        def flaky(self, *args, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls["count"] += 1
            if fails(calls["count"]):
                raise StoreUnavailable(f"results store test: {what} (connection refused)")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, flaky)
    return calls
