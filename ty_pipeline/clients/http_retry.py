"""Bounded retries with exponential backoff for the job APIs (Jobsuche, Deutsche Bank, BERUFENET).

The replaced fetcher ended a whole query silently on the first non-200 or timeout (docs/domain_rules.md §1.1),
and an SSL drop once killed the rest of the night (§10.3). Here transient failures are retried a few
times with backoff by the one retry policy of every client (`clients/retry_policy.py`, tenacity); what
still fails is raised with a message saying what and where.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ty_pipeline.clients.rate_limit import RateLimiter
from ty_pipeline.clients.retry_policy import BackoffRetry, RetriesExhausted, TransientFailure
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


class RetryPolicy(BackoffRetry):
    """The shared policy with the job APIs' longer cap: a WAF's `Retry-After` may ask for up to a minute."""

    def __init__(self, *, max_retries: int = 4, backoff_base_s: float = 1.0, backoff_max_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(max_retries=max_retries, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
                         sleep=sleep)


def make_session(user_agent: str, pool_size: int = 8) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": user_agent, "Accept": "application/json"})
    return session


class JsonApiClient:
    """A pooled session to one job API with the retry policy, an injectable `sleep` (tests need not wait)
    and an optional per-source `limiter` that paces every request. A key, when the API takes one (the
    Bundesagentur's public client ids; Deutsche Bank takes none), is sent in `X-API-Key`. Subclasses
    set the defaults."""

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
        key = api_key or self.default_api_key
        if key:
            self.session.headers["X-API-Key"] = key
        self.timeout = (min(10.0, timeout_s), timeout_s)  # (connect, read)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.limiter = limiter

    def close(self) -> None:
        self.session.close()

    def fetch_json(
        self, method: str, path: str, *, what: str, ok_statuses: frozenset[int] = frozenset({200}), **kwargs: Any
    ) -> tuple[int, Any]:
        """`request_json` for `path` below the base URL with this client's policy, timeouts and pace."""
        return request_json(
            self.session, method, f"{self.base_url}{path}", what=what, policy=self.policy, timeout=self.timeout,
            sleep=self.sleep, ok_statuses=ok_statuses, limiter=self.limiter, **kwargs,
        )


# The name `clients/berufenet.py` still imports (its subclass always has a key).
KeyedJsonClient = JsonApiClient


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

    def attempt(_number: int) -> tuple[int, Any]:
        try:
            with limiter.request() if limiter is not None else nullcontext():
                resp = session.request(method, url, timeout=timeout, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientFailure(f"{type(exc).__name__}: {redact_secrets_of(str(exc), url)}") from None
        if resp.status_code in ok_statuses:
            try:
                return resp.status_code, resp.json()
            except (ValueError, json.JSONDecodeError) as exc:
                if resp.status_code != 200:
                    return resp.status_code, None
                raise TransientFailure(f"invalid JSON in HTTP 200 answer ({len(resp.content)} bytes): {exc}") from None
        if resp.status_code in TRANSIENT_STATUSES:
            raise TransientFailure(
                f"HTTP {resp.status_code}: {resp.text[:200]}", status=resp.status_code,
                retry_after=resp.headers.get("Retry-After"), slow_down=resp.status_code in SLOW_DOWN_STATUSES,
            )
        body: Any
        try:
            body = resp.json()
        except ValueError:
            body = resp.text[:500]
        message = redact_secrets_of(f"{what}: HTTP {resp.status_code}: {str(body)[:300]}", url)
        raise SourceError(message, status=resp.status_code, body=body)

    def hold_off(failure: TransientFailure, pause: float) -> None:
        if failure.slow_down and limiter is not None:
            limiter.hold_off(pause)

    try:
        result, _attempts = policy.run(attempt, what=what, sleep=sleep, before_retry=hold_off)
    except RetriesExhausted as exhausted:
        # The server's "slow down" holds the whole source off even after the last attempt: the next
        # request of another worker must not walk into the same block.
        hold_off(exhausted.last, policy.backoff_delay(exhausted.attempts - 1, exhausted.last.retry_after))
        raise SourceError(redact_secrets_of(
            f"{what}: gave up after {exhausted.attempts} attempts; last error: {exhausted.last.detail}", url
        )) from None
    return result
