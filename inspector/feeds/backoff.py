"""Exponential retry delays with jitter, shared by the feeds (camera reconnects, store outages)."""

from __future__ import annotations

import random as random_module
from collections.abc import Callable

STORE_RETRY_INITIAL_SECONDS = 1.0  # store outage: first retry after this, doubling ...
STORE_RETRY_MAX_SECONDS = 30.0  # ... up to this
STORE_RETRY_JITTER = 0.25  # +-25%: stations that lost the store together do not retry in step


class Backoff:
    """Exponential retry delays with jitter (camera reconnects, store outages): initial, 2x, 4x ...
    up to max, each +-jitter."""

    def __init__(self, initial: float, maximum: float, jitter: float,
                 random: Callable[[], float] = random_module.random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.random = random
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * (2 ** self.failures))
        self.failures += 1
        return max(0.0, base * (1.0 + self.jitter * (2.0 * self.random() - 1.0)))

    def reset(self) -> None:
        self.failures = 0
