"""Per-source pacing: the token bucket with a fake clock, the in-flight cap with real threads, a 429 that
pauses the whole source, and the cap holding across `job_descriptions`' worker pool over loopback HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.clients.jobsuche import JobsucheClient
from ty_pipeline.clients.rate_limit import RateLimit, RateLimiter
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank
from ty_pipeline_tests.fakes.http_base import Request, Response
from ty_pipeline_tests.fakes.jobsuche_server import DETAIL_PREFIX, FakeJobsuche
from ty_pipeline_tests.frozen_clock import FrozenClock
from ty_pipeline_tests.test_postings_assets import add_aa, mat_metadata, refnr, run


def limiter(clock: FrozenClock, rate: float, burst: int, max_in_flight: int = 100) -> RateLimiter:
    return RateLimiter(RateLimit(rate, burst, max_in_flight), clock=clock, sleep=clock.sleep)


def test_many_calls_from_several_threads_start_at_the_rate_after_one_burst() -> None:
    clock = FrozenClock()
    bucket = limiter(clock, rate=20.0, burst=5)

    def calls() -> None:
        for _ in range(50):
            with bucket.request():
                pass

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 200 requests at one instant: 5 go at once (the burst), every later one 1/20 s after the previous.
    assert bucket.stats().requests == 200
    assert len(clock.sleeps) == 195
    assert sorted(clock.sleeps) == pytest.approx([k / 20.0 for k in range(1, 196)])
    # So no window of the schedule holds more than burst + rate * window starts.
    starts = sorted([0.0] * 5 + clock.sleeps)
    for i, first in enumerate(starts):
        in_one_second = sum(1 for s in starts[i:] if s < first + 1.0)
        assert in_one_second <= 5 + 20


def test_the_burst_refills_after_idle_time_but_never_beyond_its_size() -> None:
    clock = FrozenClock(now=0.0)
    bucket = limiter(clock, rate=2.0, burst=3)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits == [0.0, 0.0, 0.0, 0.5]
    clock.now = 1000.0  # a long pause refills the bucket to `burst`, not to 2,000 tokens
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0]
    clock.now = 1000.5  # half a second refills one token; the queue ahead still counts
    assert bucket.reserve() == pytest.approx(1.0)


def test_a_hold_off_pauses_every_caller_and_allows_no_burst_after_it() -> None:
    clock = FrozenClock(now=0.0)
    bucket = limiter(clock, rate=10.0, burst=4)
    assert bucket.reserve() == 0.0
    bucket.hold_off(5.0)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([5.0, 5.1, 5.2])
    assert bucket.stats().held_off_s == 5.0


def test_requests_in_flight_never_exceed_the_cap_however_many_threads() -> None:
    cap, callers = 3, 12
    bucket = RateLimiter(RateLimit(1e6, 1000, cap))
    lock = threading.Lock()
    first_ones = threading.Barrier(cap)
    state = {"in": 0, "max": 0, "entered": 0}

    def call() -> None:
        with bucket.request():
            with lock:
                state["in"] += 1
                state["max"] = max(state["max"], state["in"])
                n = state["entered"]
                state["entered"] += 1
            # The first `cap` callers stay inside until all of them are: without the cap every thread
            # would pile in meanwhile.
            if n < cap:
                first_ones.wait(timeout=10)
            time.sleep(0.005)
            with lock:
                state["in"] -= 1

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["max"] == cap
    assert bucket.stats().max_in_flight_seen == cap
    assert bucket.stats().requests == callers


@pytest.mark.parametrize("kwargs", [{"requests_per_s": 0.0}, {"burst": 0}, {"max_in_flight": 0}])
def test_nonsense_settings_are_refused_with_what_to_set(kwargs: dict[str, Any]) -> None:
    settings = {"requests_per_s": 30.0, "burst": 6, "max_in_flight": 6, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RateLimit(**settings)


def test_a_429_with_retry_after_pauses_the_source_and_the_retry_waits_in_the_bucket(aa: FakeJobsuche) -> None:
    add_aa(aa, 1, "Berlin")
    aa.fail_next(DETAIL_PREFIX, status=429, retry_after="3")
    clock = FrozenClock(now=0.0)
    client = JobsucheClient(aa.base_url, policy=RetryPolicy(max_retries=2, backoff_base_s=0.0),
                            sleep=lambda _s: None, limiter=limiter(clock, rate=10.0, burst=2))
    try:
        result = client.details(refnr(1))
    finally:
        client.close()
    assert result.status == 200
    assert len(aa.detail_calls()) == 2
    stats = client.limiter.stats() if client.limiter else None
    assert stats is not None and stats.requests == 2 and stats.held_off_s == 3.0
    assert clock.sleeps == [3.0]  # the retry started no earlier than Retry-After allowed


def max_overlap(requests: list[Request]) -> int:
    edges = sorted([(r.started, 1) for r in requests] + [(r.ended or r.started, -1) for r in requests],
                   key=lambda e: (e[0], e[1]))
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


@pytest.fixture
def slow_details(aa: FakeJobsuche) -> Iterator[FakeJobsuche]:
    """Detail answers take a moment, so workers that are allowed to overlap do."""
    serve = aa.handle

    def handle(request: Request) -> Response:
        response = serve(request)
        if request.path.startswith(DETAIL_PREFIX):
            response.delay_s = max(response.delay_s, 0.05)
        return response

    aa.handle = handle  # type: ignore[method-assign]
    yield aa


def test_the_in_flight_cap_holds_across_the_description_worker_pool(
    warehouse_url: str, slow_details: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    aa = slow_details
    for i in range(1, 13):
        add_aa(aa, i, "Berlin")
    run(warehouse_url, aa, db, assets=[postings], sources="arbeitsagentur")
    calls_before = len(aa.requests)
    # The pool has 2 + 2 threads (both sources' caps); Jobsuche may use only two of them at a time.
    result = run(warehouse_url, aa, db, assets=[job_descriptions], sources="arbeitsagentur",
                 jobsuche=_jobsuche_with(aa.base_url, max_in_flight=2))
    details = [r for r in aa.requests[calls_before:] if r.path.startswith(DETAIL_PREFIX)]
    assert len(details) == 12
    assert max_overlap(details) == 2
    figures = mat_metadata(result, "job_descriptions")["requests_arbeitsagentur"]
    assert figures["requests"] == 12
    assert figures["max_in_flight_seen"] == 2
    assert figures["configured"] == "1000 req/s, burst 6, 2 in flight"
    assert figures["achieved_requests_per_s"] > 0
    assert "requests_deutsche_bank" not in mat_metadata(result, "job_descriptions")  # no call made, no figures


def _jobsuche_with(base_url: str, **fields: Any) -> JobsucheResource:
    return JobsucheResource(base_url=base_url, requests_per_s=1000.0, backoff_base_s=0.01, max_retries=2,
                            timeout_s=5.0, **fields)
