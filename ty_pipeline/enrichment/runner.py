"""The bounded worker pool every LLM asset runs its postings through.

Workers only call the LLM; every result is saved from the calling thread, one posting per transaction,
as soon as it arrives, so a crash or a kill loses at most the postings in flight. Errors are sorted into
two kinds:

* the posting's own failure (an invalid answer after the corrective retry, a request the server
  rejects) becomes an `llm_error` row, retried on later runs up to `max_attempts`;
* a server failure charges nothing to the posting: it is not saved and stays pending. The server is
  gone (connection refused or reset) or a model disappeared: the run stops taking new postings at
  once. A timeout or 5xx that outlasted the client's retries (a hang, a 503 storm) defers that
  posting; a run of consecutive ones stops the run the same way, so a sick server costs no posting
  an attempt.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ty_pipeline.clients.ollama import (
    OllamaError,
    OllamaInvalidAnswer,
    OllamaModelMissing,
    OllamaRequestError,
    OllamaTransientError,
    OllamaUnavailable,
)
from ty_pipeline.domain.llm_selection import LlmStatus, WorkItem
from ty_pipeline.domain.progress import Progress
from ty_pipeline.enrichment.metrics import CallStats

RUN_FATAL_ERRORS: tuple[type[BaseException], ...] = (OllamaUnavailable, OllamaModelMissing)
POSTING_ERRORS: tuple[type[BaseException], ...] = (OllamaInvalidAnswer, OllamaRequestError, OllamaTransientError)
MAX_ERROR_CHARS = 2000


@dataclass
class Outcome:
    """What one posting's pipeline produced; `values` are the asset table's own columns."""

    status: LlmStatus
    values: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    metrics: list[Any] = field(default_factory=list)
    transport_error: bool = False  # the failure was the server or network, not the answer
    items: list[dict[str, Any]] = field(default_factory=list)  # detail rows (skill items)


def error_metrics(exc: BaseException) -> list[Any]:
    return list(getattr(exc, "metrics", None) or [])


def describe_error(exc: BaseException, stage: str) -> str:
    """One line for the `error` column and the logs: which step, which kind, the client's message."""
    reason = getattr(exc, "reason", None)
    kind = type(exc).__name__
    text = f"{stage}: {kind}" + (f" ({reason})" if reason else "") + f": {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def error_outcome(
    exc: BaseException, *, stage: str, values: dict[str, Any] | None = None, metrics: list[Any] | None = None
) -> Outcome:
    return Outcome(
        status=LlmStatus.LLM_ERROR,
        values=values or {},
        error=describe_error(exc, stage),
        metrics=[*(metrics or []), *error_metrics(exc)],
        transport_error=isinstance(exc, OllamaTransientError),
    )


@dataclass
class RunReport:
    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    aborted: str | None = None
    not_done: list[WorkItem] = field(default_factory=list)  # cancelled by an abort: still pending
    deferred: list[WorkItem] = field(default_factory=list)  # hit a server failure: not saved, still pending
    server_errors: list[str] = field(default_factory=list)  # what those server failures said
    seconds: float = 0.0

    @property
    def saved(self) -> int:
        return sum(self.statuses.values())


def run_pool(
    items: Sequence[WorkItem],
    work: Callable[[WorkItem], Outcome],
    save: Callable[[WorkItem, Outcome], None],
    *,
    workers: int,
    stats: CallStats,
    log: Callable[[str], None],
    what: str,
    abort_after_consecutive_transport_errors: int = 3,
) -> RunReport:
    """At most `workers` postings in flight; the next one is submitted only after a result is saved, so
    an abort stops at once and a run never holds more unsaved work than it has workers."""
    report = RunReport()
    progress = Progress(what, len(items), log)
    started = time.monotonic()
    consecutive = 0
    queue = list(reversed(items))  # pop() takes the newest first
    in_flight: dict[Future[Outcome], WorkItem] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=what)

    def abort(reason: str) -> None:
        if report.aborted is None:
            report.aborted = reason
            log(f"{what}: stopping early, {reason}")
            report.not_done.extend(reversed(queue))
            queue.clear()

    try:
        while queue or in_flight:
            while queue and len(in_flight) < max(1, workers):
                item = queue.pop()
                in_flight[pool.submit(work, item)] = item
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                item = in_flight.pop(future)
                exc = future.exception()
                if exc is not None:
                    if isinstance(exc, RUN_FATAL_ERRORS):
                        report.not_done.append(item)
                        abort(f"the Ollama server failed: {exc}")
                        continue
                    if not isinstance(exc, OllamaError):
                        raise exc  # a bug, not an LLM outcome: fail loudly
                    # A posting-level error a pipeline did not catch: still that posting's failure.
                    outcome = error_outcome(exc, stage="llm")
                else:
                    outcome = future.result()
                stats.add(outcome.metrics)
                if outcome.transport_error:
                    # The server's failure, not the posting's: no row, no attempt; the next run takes it.
                    report.deferred.append(item)
                    report.server_errors.append(f"posting {item.posting_id} ({item.source} {item.external_id}): "
                                                f"{outcome.error}")
                    consecutive += 1
                    log(f"{what}: server failure on posting {item.posting_id}, left pending: {outcome.error}")
                    limit = abort_after_consecutive_transport_errors
                    if limit and consecutive >= limit:
                        abort(f"{consecutive} postings in a row met server failures (timeouts, 5xx, 503 busy) after "
                              f"the client's retries; none was charged an attempt; last: {outcome.error}")
                    progress.step()
                    continue
                save(item, outcome)  # committed before the next posting is submitted
                report.statuses[str(outcome.status)] += 1
                if outcome.status == LlmStatus.LLM_ERROR:
                    report.failures.append(
                        f"posting {item.posting_id} ({item.source} {item.external_id}): {outcome.error}"
                    )
                consecutive = 0
                progress.step()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        report.seconds = time.monotonic() - started
    return report
