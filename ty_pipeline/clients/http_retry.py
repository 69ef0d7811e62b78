"""Bounded retries with exponential backoff for the job APIs (Jobsuche, Deutsche Bank).

The replaced fetcher ended a whole query silently on the first non-200 or timeout (docs/domain_rules.md §1.1),
and an SSL drop once killed the rest of the night (§10.3). Here transient failures are retried a few
times with backoff; what still fails is raised with a message saying what and where.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ty_pipeline.clients.rate_limit import RateLimiter
from ty_pipeline.domain.text_clean import strip_unstorable
from ty_pipeline.domain.urls import redact_secrets_of

TRANSIENT_STATUSES = frozenset({403, 429, 500, 502, 503, 504})  # 403 = WAF / rate limiting on Jobsuche
# The server's "slow down": the pause applies to every request of the source, not only the one retried.
SLOW_DOWN_STATUSES = frozenset({403, 429})


class SourceError(Exception):
    """A job API call failed for good (after retries, or with a permanent status)."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        # The message quotes the answer's body and ends up in `last_error` and metadata: a NUL in an
        # error page must not make the failure itself unstorable (issue #9).
        super().__init__(strip_unstorable(message))
        self.status = status
        self.body = body


@dataclass
class RetryPolicy:
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            parsed = parse_retry_after(retry_after)
            if parsed is not None:
                return min(parsed, self.backoff_max_s)
        # Full jitter: spread retries of parallel workers instead of hammering in lockstep.
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * (2**attempt)))


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
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def make_session(user_agent: str, pool_size: int = 8) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
    return session


class KeyedJsonClient:
    """A pooled session that sends a public client id in `X-API-Key` (the Bundesagentur's APIs), with the
    retry policy, an injectable `sleep` (tests need not wait) and an optional per-source `limiter` that
    paces every request. Subclasses set the defaults."""

    default_api_key: str = ""
    default_user_agent: str = "ty-pipeline/0.1"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        user_agent: str | None = None,
        timeout_s: float = 30.0,
        policy: RetryPolicy | None = None,
        pool_size: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = make_session(user_agent or self.default_user_agent, pool_size)
        self.session.headers["X-API-Key"] = api_key or self.default_api_key
        self.timeout = (min(10.0, timeout_s), timeout_s)  # (connect, read)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.limiter = limiter

    def close(self) -> None:
        self.session.close()


def request_json(
    session: requests.Session,
    method: str,
    url: str,
    *,
    what: str,
    policy: RetryPolicy,
    timeout: tuple[float, float],
    sleep: Callable[[float], None] = time.sleep,
    ok_statuses: frozenset[int] = frozenset({200}),
    limiter: RateLimiter | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Send a request and decode JSON, retrying transient failures. Returns (status, payload).

    Statuses in `ok_statuses` are returned with their decoded body (e.g. 404 for "not found" detail
    answers); anything else non-transient raises SourceError at once. Error messages never carry the
    URL's credentials or query string (an API key in `TY_*_BASE_URL` must not reach the event log). A truncated or non-JSON body on a
    200 is treated as transient: a proxy cut the answer.

    With a `limiter`, every attempt (retries included) waits for the source's pace and in-flight cap,
    and a 403/429 pauses the whole source for the backoff, not only this caller.
    """
    last_error = "no attempt made"
    for attempt in range(policy.max_retries + 1):
        retry_after: str | None = None
        slow_down = False
        try:
            with limiter.request() if limiter is not None else nullcontext():
                resp = session.request(method, url, timeout=timeout, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            last_error = f"{type(exc).__name__}: {redact_secrets_of(str(exc), url)}"
        else:
            if resp.status_code in ok_statuses:
                try:
                    return resp.status_code, resp.json()
                except (ValueError, json.JSONDecodeError) as exc:
                    if resp.status_code != 200:
                        return resp.status_code, None
                    last_error = f"invalid JSON in HTTP 200 answer ({len(resp.content)} bytes): {exc}"
            elif resp.status_code in TRANSIENT_STATUSES:
                last_error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                retry_after = resp.headers.get("Retry-After")
                slow_down = resp.status_code in SLOW_DOWN_STATUSES
            else:
                body: Any
                try:
                    body = resp.json()
                except ValueError:
                    body = resp.text[:500]
                message = redact_secrets_of(f"{what}: HTTP {resp.status_code}: {str(body)[:300]}", url)
                raise SourceError(message, status=resp.status_code, body=body)
        if attempt < policy.max_retries or slow_down:
            pause = policy.delay(attempt, retry_after)
            if slow_down and limiter is not None:
                limiter.hold_off(pause)
            if attempt < policy.max_retries:
                sleep(pause)
    raise SourceError(redact_secrets_of(
        f"{what}: gave up after {policy.max_retries + 1} attempts; last error: {last_error}", url
    ))
