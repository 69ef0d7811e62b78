"""The one bounded-concurrency helper (issue #10 item 3): at most N in flight, the input pulled lazily,
every call's exception delivered with its item, and a stop or an error cancelling what has not started."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ty_pipeline.domain.concurrency import Bounded, Finished, run_all


class Meter:
    """Counts the calls running at once and remembers the most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.started: list[int] = []

    def __call__(self, item: int) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.started.append(item)
        time.sleep(0.005)
        with self.lock:
            self.now -= 1
        return item * 10


def test_never_more_calls_running_than_workers() -> None:
    meter = Meter()
    with Bounded(meter, range(60), workers=4) as run:
        results = {done.item: done.result() for done in run}
    assert results == {i: i * 10 for i in range(60)}
    assert meter.most == 4  # reached, never passed


def test_never_more_items_pulled_than_in_flight_ahead_of_the_caller() -> None:
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield i

    delivered, ahead = 0, []
    meter = Meter()
    with Bounded(meter, items(), workers=2, in_flight=5) as run:
        for _ in run:
            ahead.append(pulled - delivered)  # submitted, not yet handed to this loop (this one included)
            delivered += 1
    assert delivered == 100
    assert max(ahead) == 5
    assert meter.most == 2  # the three extra calls waited in the queue, not on a thread


def test_the_input_is_pulled_lazily() -> None:
    pulled: list[int] = []

    def endless() -> Iterator[int]:
        for i in itertools.count():
            if i > 1000:
                raise AssertionError("the whole input was pulled")
            pulled.append(i)
            yield i

    with Bounded(lambda i: i, endless(), workers=3) as run:
        first = [done.item for done in itertools.islice(run, 5)]
    assert sorted(first) == first and len(first) == 5
    assert len(pulled) <= 5 + 3  # what was delivered plus one window, never the input


def test_each_exception_is_delivered_with_its_item() -> None:
    def work(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(f"bad {i}")
        return i

    with Bounded(work, range(12), workers=3) as run:
        ends = {done.item: done for done in run}
    assert sorted(ends) == list(range(12))
    for i, done in ends.items():
        if i % 3 == 0:
            assert isinstance(done.error, ValueError) and str(done.error) == f"bad {i}" and not done.cancelled
            with pytest.raises(ValueError, match=f"bad {i}"):
                done.result()
        else:
            assert done.error is None and done.result() == i


def _blocked_after_first(gate: threading.Event, started: list[int], ended: list[int]) -> Callable[[int], int]:
    """Item 0 returns at once; every later item waits for `gate`."""

    def work(i: int) -> int:
        started.append(i)
        if i > 0:
            gate.wait(10)
        ended.append(i)
        return i

    return work


def test_stop_cancels_what_has_not_started_and_leaves_the_rest_untaken() -> None:
    gate, started, ended = threading.Event(), list[int](), list[int]()
    work = _blocked_after_first(gate, started, ended)
    seen: list[Finished[int, int]] = []
    with Bounded(work, range(100), workers=1, in_flight=3) as run:
        for done in run:
            seen.append(done)
            if done.item == 0:
                run.stop()
                threading.Timer(0.2, gate.set).start()  # item 1, if it started, may finish now
        untaken = run.untaken()
    assert [d.item for d in seen] == [0, 1, 2]  # every submitted item is delivered once
    assert seen[2].cancelled and 2 not in started  # queued behind a running call: never started
    assert seen[1].cancelled or seen[1].result() == 1
    assert untaken == list(range(3, 100))  # never pulled, still in order for the caller


def test_an_error_in_the_loop_cancels_the_queue_and_waits_for_running_calls() -> None:
    gate, started, ended = threading.Event(), list[int](), list[int]()
    work = _blocked_after_first(gate, started, ended)
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(100):
            pulled.append(i)
            yield i

    threading.Timer(0.2, gate.set).start()
    with pytest.raises(RuntimeError, match="saving failed"), Bounded(work, items(), workers=1, in_flight=3) as run:
        for _ in run:
            raise RuntimeError("saving failed")
    assert pulled == [0, 1, 2]  # nothing more was taken after the error
    assert 2 not in started
    assert sorted(ended) == sorted(started)  # no call still running after the block


def test_run_all_waits_for_every_call_and_keeps_input_order() -> None:
    def work(name: str) -> str:
        time.sleep(0.05 if name == "a" else 0.0)  # the first one ends last
        if name == "b":
            raise KeyError(name)
        return name.upper()

    ends = run_all(work, ["a", "b", "c"])
    assert [d.item for d in ends] == ["a", "b", "c"]
    assert ends[0].result() == "A" and isinstance(ends[1].error, KeyError) and ends[2].result() == "C"
    assert run_all(work, []) == []
