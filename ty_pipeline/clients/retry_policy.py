"""The one retry policy of every HTTP client (job APIs, BERUFENET, both LLM backends), on tenacity.

Why one: the job APIs and the LLM clients each had a hand-written retry loop (issues #10 and #11); a
well-kept library and one policy mean one behaviour to reason about: a failed attempt that a retry may
fix raises `TransientFailure`; the policy waits full jitter below a capped exponential (parallel workers
do not retry in lockstep) or the server's `Retry-After` (capped, so a worker is never parked for an
hour), up to `max_retries` retries; then `RetriesExhausted` carries the last failure and the count, and
the client turns it into its own typed error. Any other exception ends the request at once. `sleep` is
injectable so tests need not wait.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from datetime import UTC
from typing import TypeVar

import tenacity

from ty_pipeline.domain.clock import utcnow_aware

log = logging.getLogger(__name__)

T = TypeVar("T")


def parse_retry_after(value: str) -> float | None:
    """`Retry-After` is seconds or an HTTP date."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - utcnow_aware()).total_seconds())


class TransientFailure(Exception):
    """One attempt failed in a way a retry may fix. Raised inside an attempt; `BackoffRetry` retries it.

    `never_answered`: no HTTP response and no read timeout (nothing there, or the connection was lost
    before an answer); `reset`: that loss happened after connecting (something is listening);
    `slow_down`: the server asked the whole client to slow down (a 403/429 of a job API).
    """

    def __init__(self, detail: str, *, status: int | None = None, never_answered: bool = False,
                 reset: bool = False, retry_after: str | None = None, slow_down: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.never_answered = never_answered
        self.reset = reset
        self.retry_after = retry_after
        self.slow_down = slow_down


class RetriesExhausted(Exception):
    """Every attempt failed transiently; `last` is the last failure, `attempts` how many were made."""

    def __init__(self, last: TransientFailure, attempts: int) -> None:
        super().__init__(last.detail)
        self.last = last
        self.attempts = attempts


class _RetryAfterOrFullJitter(tenacity.wait.wait_base):
    """The server's `Retry-After` (capped) when it sent one, else tenacity's full-jitter exponential."""

    def __init__(self, policy: BackoffRetry) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        failure = outcome.exception() if outcome is not None else None
        retry_after = failure.retry_after if isinstance(failure, TransientFailure) else None
        return self.policy.backoff_delay(retry_state.attempt_number - 1, retry_after)


class BackoffRetry:
    """How often and how long to retry one logical request."""

    def __init__(self, *, max_retries: int = 4, backoff_base_s: float = 1.0, backoff_max_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, not {max_retries}")
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.sleep = sleep
        self._jitter = tenacity.wait_random_exponential(multiplier=backoff_base_s, max=backoff_max_s)

    def backoff_delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after:
            parsed = parse_retry_after(retry_after)
            if parsed is not None:
                return min(parsed, self.backoff_max_s)
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # only attempt_number is read
        state.attempt_number = retry + 1
        return float(self._jitter(state))

    def run(
        self,
        attempt: Callable[[int], T],
        *,
        what: str,
        max_retries: int | None = None,
        sleep: Callable[[float], None] | None = None,
        before_retry: Callable[[TransientFailure, float], None] | None = None,
    ) -> tuple[T, int]:
        """Call `attempt(n)` (n = 1, 2, ...) until it returns; `TransientFailure` is retried, any other
        exception ends at once. `before_retry(failure, pause)` runs before each pause. Returns (result,
        attempts); raises `RetriesExhausted` at the end."""
        retries = self.max_retries if max_retries is None else max_retries
        made = 0

        def counted() -> T:
            nonlocal made
            made += 1
            return attempt(made)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning("%s failed: %s; retry %d/%d in %.1f s", what, failure, state.attempt_number, retries, delay)
            if before_retry is not None and isinstance(failure, TransientFailure):
                before_retry(failure, delay)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(retries + 1),
            wait=_RetryAfterOrFullJitter(self),
            retry=tenacity.retry_if_exception_type(TransientFailure),
            sleep=sleep if sleep is not None else self.sleep,  # a recording list-like sleep may be empty
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(counted), made
        except TransientFailure as failure:
            raise RetriesExhausted(failure, made) from failure
