"""The one retry policy of every HTTP client (`clients/retry_policy.py`, tenacity)."""

from __future__ import annotations

import pytest

from ty_pipeline.clients import http_retry, llm_base
from ty_pipeline.clients.retry_policy import BackoffRetry, RetriesExhausted, TransientFailure


def test_job_apis_and_llm_clients_share_one_policy_with_their_own_cap() -> None:
    assert issubclass(http_retry.RetryPolicy, BackoffRetry) and llm_base.LlmRetryPolicy is BackoffRetry
    assert http_retry.RetryPolicy().backoff_max_s == 60.0  # a WAF may announce a minute
    assert BackoffRetry().backoff_max_s == 30.0


def test_waits_are_full_jitter_below_the_capped_exponential_or_the_capped_retry_after() -> None:
    policy = BackoffRetry(backoff_base_s=1.0, backoff_max_s=8.0)
    for retry in range(6):
        for _ in range(50):
            assert 0.0 <= policy.backoff_delay(retry) <= min(8.0, 2.0**retry)
    assert policy.backoff_delay(0, "3") == 3.0
    assert policy.backoff_delay(0, "3600") == 8.0  # never parked for an hour
    assert 0.0 <= policy.backoff_delay(0, "not a date") <= 1.0


def test_only_transient_failures_are_retried_and_each_pause_is_announced() -> None:
    sleeps: list[float] = []
    announced: list[tuple[str, float]] = []
    policy = BackoffRetry(max_retries=3, backoff_base_s=0.0, sleep=sleeps.append)
    outcomes = iter([TransientFailure("503", retry_after="2"), TransientFailure("reset"), "ok"])

    def attempt(n: int) -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return f"{outcome} at {n}"

    result = policy.run(attempt, what="GET /x", before_retry=lambda f, pause: announced.append((f.detail, pause)))
    assert result == ("ok at 3", 3)
    assert sleeps == [2.0, 0.0] and announced == [("503", 2.0), ("reset", 0.0)]

    def permanent(n: int) -> str:
        raise ValueError("HTTP 400")

    with pytest.raises(ValueError):
        policy.run(permanent, what="GET /x")


def test_exhausted_retries_carry_the_last_failure_and_the_count() -> None:
    policy = BackoffRetry(max_retries=2, backoff_base_s=0.0, sleep=lambda s: None)

    def always(n: int) -> str:
        raise TransientFailure(f"timeout {n}", slow_down=True)

    with pytest.raises(RetriesExhausted) as caught:
        policy.run(always, what="GET /x")
    assert (caught.value.attempts, caught.value.last.detail, caught.value.last.slow_down) == (3, "timeout 3", True)
