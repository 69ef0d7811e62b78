"""Per-source request pacing: a token bucket plus a cap on requests in flight, shared by every thread.

The job APIs publish no limits, and Jobsuche answers sporadic 403/429 under steady polling
(docs/wire_formats.md §1.7). A sleep after each call per worker (the old politeness) made the rate a
product of worker count, delay and server latency: nobody could say what rate a run used, and 16,000
details took 594 s. Here one `RateLimiter` per source and step paces *every* HTTP request of that source
(listing pages, details, retries) to `requests_per_s`, allows `burst` back-to-back requests after an
idle spell, and never has more than `max_in_flight` requests open at once, however many threads share it.

The bucket is kept in its "virtual scheduling" form (GCRA): instead of a token count it keeps the
theoretical time of the next request, so each caller reserves its start time under the lock and sleeps
outside it. Equivalent to a token bucket of size `burst` refilled at `requests_per_s`, and exact with
an injected clock, which lets tests check the schedule without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """How hard one source may be called: sustained rate, burst after idle, concurrent requests."""

    requests_per_s: float
    burst: int
    max_in_flight: int

    def __post_init__(self) -> None:
        if not self.requests_per_s > 0:
            raise ValueError(f"requests_per_s must be > 0 (got {self.requests_per_s}); "
                             "set a positive rate, e.g. 30 for Jobsuche")
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1 (got {self.burst}); 1 means strictly evenly spaced requests")
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1 (got {self.max_in_flight})")

    def describe(self) -> str:
        return f"{self.requests_per_s:g} req/s, burst {self.burst}, {self.max_in_flight} in flight"


@dataclass(frozen=True)
class RateStats:
    """What a limiter let through: for step metadata (configured vs achieved rate)."""

    requests: int
    waited_s: float  # summed over callers: time spent waiting for the bucket
    held_off_s: float  # pauses ordered by the server (429/403), summed
    max_in_flight_seen: int
    first_start: float | None
    last_start: float | None

    def achieved_per_s(self, now: float) -> float | None:
        """Requests per second from the first request's start until `now`; None before two requests."""
        if self.first_start is None or self.requests < 2 or now <= self.first_start:
            return None
        return self.requests / (now - self.first_start)


class RateLimiter:
    """Thread-safe pacing for one source: `with limiter.request(): session.get(...)`."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._interval = 1.0 / limit.requests_per_s
        self._tolerance = (limit.burst - 1) * self._interval  # how far ahead of schedule a burst may run
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(limit.max_in_flight)
        self._next_at: float | None = None  # theoretical start of the next request at the sustained rate
        self._requests = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._waited = 0.0
        self._held_off = 0.0
        self._first: float | None = None
        self._last: float | None = None

    def reserve(self) -> float:
        """Reserve the next start time; returns how long the caller must wait before sending.

        Callers that arrive together get consecutive slots `1 / requests_per_s` apart, after the first
        `burst` ones which may start at once.
        """
        with self._lock:
            now = self._clock()
            next_at = now if self._next_at is None else max(self._next_at, now)
            start = max(now, next_at - self._tolerance)
            self._next_at = next_at + self._interval
            self._requests += 1
            self._first = start if self._first is None else min(self._first, start)
            self._last = start if self._last is None else max(self._last, start)
            wait = start - now
            self._waited += wait
            return wait

    def hold_off(self, seconds: float) -> None:
        """The server asked us to slow down (429 `Retry-After`, or a 403 from its WAF): no request of
        this source starts within `seconds`, and none may burst right after the pause."""
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            # The next start is at `until` at the earliest; the tolerance is added so no burst follows.
            floor = until + self._tolerance
            if self._next_at is None or self._next_at < floor:
                self._next_at = floor
            self._held_off += seconds

    @contextmanager
    def request(self) -> Iterator[None]:
        """Hold one in-flight slot and one paced start for the duration of a request."""
        # The slot first: a caller waiting for a slot must not also sit on a reserved start time.
        self._slots.acquire()
        try:
            wait = self.reserve()
            if wait > 0:
                self._sleep(wait)
            with self._lock:
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self._in_flight -= 1
        finally:
            self._slots.release()

    def stats(self) -> RateStats:
        with self._lock:
            return RateStats(self._requests, self._waited, self._held_off, self._max_in_flight,
                             self._first, self._last)

    def summary(self) -> dict[str, float | int | str | None]:
        """Configured and achieved figures, for step metadata."""
        stats = self.stats()
        achieved = stats.achieved_per_s(self._clock())
        return {
            "requests": stats.requests,
            "configured": self.limit.describe(),
            "configured_requests_per_s": self.limit.requests_per_s,
            "achieved_requests_per_s": round(achieved, 2) if achieved is not None else None,
            "max_in_flight_seen": stats.max_in_flight_seen,
            "waited_s_total": round(stats.waited_s, 2),
            "server_hold_off_s": round(stats.held_off_s, 2),
        }
