"""A clock that stands still, for the rate-limiter tests: `sleep` only records, so each caller's wait is
exactly the offset the limiter reserved for it."""

from __future__ import annotations

import threading


class FrozenClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
