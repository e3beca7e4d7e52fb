"""Time as a dependency.

Everything that needs "now" takes a :class:`Clock`, so tests can move time forward (retries,
throttles, signature windows) without sleeping. Times are integer epoch milliseconds in storage.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def now_ms(self) -> int:
        """Milliseconds since the epoch, as stored in the database."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()

    def now_ms(self) -> int:
        return int(time.time() * 1000)


class FakeClock:
    """A clock that only moves when told to (tests and benchmarks)."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def now_ms(self) -> int:
        return int(self._now * 1000)

    def advance(self, seconds: float) -> None:
        self._now += seconds
