"""Bounded concurrency: one function over many items on a few threads, at most N calls in flight.

The pipeline's one thread-pool pattern (issue #10). Description fetches, the LLM lanes, BERUFENET detail
calls and the LLM verification of titles all need the same four things:

* at most `in_flight` calls submitted at a time, on `workers` threads;
* the input pulled only as slots free up, so a 16,000-posting day is never queued at once and a stop
  leaves what was never pulled untouched (`untaken`);
* every call's end delivered to the calling thread as it comes (`Finished`: the value, or the exception
  the call raised), so results can be saved one by one from one thread;
* a clean end: on `stop()`, an error in the caller's loop or leaving the `with` block, calls that have
  not started are cancelled and the ones running are waited for, so no thread outlives the run.

Dagster-free and I/O-free: threads only, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Finished(Generic[T, R]):
    """One item's end: the value its call returned, or the exception it raised (`CancelledError`: the
    call was submitted but never started, because the run stopped)."""

    item: T
    index: int  # the item's position in the input
    value: R | None
    error: BaseException | None

    @property
    def cancelled(self) -> bool:
        return isinstance(self.error, CancelledError)

    def result(self) -> R:
        """The value, or the call's exception raised here."""
        if self.error is not None:
            raise self.error
        return cast(R, self.value)


class Bounded(Generic[T, R]):
    """`work` over `items`, yielding a `Finished` per submitted item in the order the calls end.

        with Bounded(fetch, postings, workers=8) as run:
            for done in run:
                save(done.item, done.result())

    `in_flight` (default: `workers`) may exceed `workers`, so a freed thread always finds a call
    waiting; the extra calls are queued, not running, and a stop cancels them. The next item is pulled
    from the input only after the caller has taken a result, so the caller's loop body (a save, an
    abort decision) always runs before more work is submitted. Iterate from one thread; call `stop`
    from that same thread (the loop body).
    """

    def __init__(
        self,
        work: Callable[[T], R],
        items: Iterable[T],
        *,
        workers: int,
        in_flight: int | None = None,
        name: str = "bounded",
    ) -> None:
        self.workers = max(1, workers)
        self.in_flight = max(self.workers, in_flight or self.workers)
        self._work = work
        self._items = iter(items)
        self._name = name
        self._taken = 0
        self._stopped = False
        self._pending: dict[Future[R], tuple[int, T]] = {}
        self._run: Generator[Finished[T, R], None, None] | None = None

    def __iter__(self) -> Iterator[Finished[T, R]]:
        if self._run is None:
            self._run = self._generate()
        return self._run

    def __enter__(self) -> Bounded[T, R]:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop(self) -> None:
        """Take no more items; cancel the submitted calls that have not started (they are still
        delivered, as cancelled); calls already running finish and are delivered."""
        self._stopped = True
        self._cancel_queued()

    def untaken(self) -> list[T]:
        """After a stop: the items never pulled from the input, in input order (drains the input)."""
        if not self._stopped:
            raise RuntimeError("untaken() is for a stopped run; it would drain the input of a live one")
        return list(self._items)

    def close(self) -> None:
        """Stop, cancel what has not started and wait for the running calls (idempotent)."""
        self.stop()
        if self._run is not None:
            self._run.close()  # its `finally` shuts the pool down

    def _generate(self) -> Generator[Finished[T, R], None, None]:
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self._name)
        try:
            self._fill(pool)
            while self._pending:
                done, _ = wait(self._pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: self._pending[f][0]):  # input order within a batch
                    index, item = self._pending.pop(future)
                    yield _finished(future, item, index)
                    self._fill(pool)  # the caller has handled that result: a slot is free
        finally:
            self._stopped = True
            self._cancel_queued()
            pool.shutdown(wait=True, cancel_futures=True)

    def _cancel_queued(self) -> None:
        # Newest first: a thread freed meanwhile takes the oldest queued call, so the cancelled calls are
        # always the last ones submitted, never a gap in the middle.
        for future in reversed(list(self._pending)):
            future.cancel()

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        while not self._stopped and len(self._pending) < self.in_flight:
            try:
                item = next(self._items)
            except StopIteration:
                return
            self._pending[pool.submit(self._work, item)] = (self._taken, item)
            self._taken += 1


def _finished(future: Future[R], item: T, index: int) -> Finished[T, R]:
    if future.cancelled():
        return Finished(item, index, None, CancelledError())
    error = future.exception()
    return Finished(item, index, None if error is not None else future.result(), error)


def run_all(work: Callable[[T], R], items: Iterable[T], *, name: str = "fan-out") -> list[Finished[T, R]]:
    """A fan-out of a handful of calls (one per LLM host or grader), all at once; waits for every one
    and returns them in input order, each with its value or exception."""
    todo = list(items)
    with Bounded(work, todo, workers=len(todo), name=name) as run:
        return sorted(run, key=lambda done: done.index)
