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
from ty_pipeline.domain.concurrency import Bounded
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
    """What happened to one lane's (one asset's) postings in a run."""

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


@dataclass(frozen=True)
class Task:
    """One posting of one lane: a lane is one LLM asset (`posting_summaries`, `skill_keywords`,
    `ihl_scores`) with its own pipeline and table."""

    lane: str
    item: WorkItem


def interleave(plans: dict[str, Sequence[WorkItem]]) -> list[Task]:
    """Posting-major order: all lanes of a posting next to each other, postings in the lanes' order
    (newest first). The calls of one posting then reach the server close together, which is what a
    prefix cache needs to read the posting once, and a posting is finished in every asset before the
    run moves far ahead."""
    order: dict[int, list[Task]] = {}
    for lane, items in plans.items():
        for item in items:
            order.setdefault(item.posting_id, []).append(Task(lane, item))
    return [task for tasks in order.values() for task in tasks]


def run_pool(
    tasks: Sequence[Task],
    work: Callable[[Task], Outcome],
    save: Callable[[Task, Outcome], None],
    *,
    lanes: Sequence[str],
    workers: int,
    stats: dict[str, CallStats],
    log: Callable[[str], None],
    what: str,
    abort_after_consecutive_transport_errors: int = 3,
) -> dict[str, RunReport]:
    """At most `workers` tasks in flight; the next one is submitted only after a result is saved, so
    an abort stops at once and a run never holds more unsaved work than it has workers.

    The LLM client bounds the calls per host (its slot budget); `workers` only has to be large enough
    that a freed slot always finds a call waiting. A server failure or an abort concerns the server,
    not one lane, so it is counted across lanes; every lane gets its own report."""
    reports = {lane: RunReport() for lane in lanes}
    active = {task.lane for task in tasks}  # an abort concerns the lanes that had work in this run
    progress = Progress(what, len(tasks), log)
    started = time.monotonic()
    consecutive = 0
    aborted: str | None = None
    run = Bounded(work, tasks, workers=workers, name=what)

    def abort(reason: str) -> None:
        nonlocal aborted
        if aborted is None:
            aborted = reason
            log(f"{what}: stopping early, {reason}")
            for lane in active:
                reports[lane].aborted = reason
            run.stop()
            for task in run.untaken():
                reports[task.lane].not_done.append(task.item)

    try:
        with run:
            for done in run:
                task = done.item
                item, report = task.item, reports[task.lane]
                exc = done.error
                if done.cancelled:  # submitted, not yet started when the run stopped: not attempted
                    report.not_done.append(item)
                    continue
                if exc is not None:
                    if isinstance(exc, RUN_FATAL_ERRORS):
                        report.not_done.append(item)
                        abort(f"the LLM server failed: {exc}")
                        continue
                    if not isinstance(exc, OllamaError):
                        raise exc  # a bug, not an LLM outcome: fail loudly
                    # A posting-level error a pipeline did not catch: still that posting's failure.
                    outcome = error_outcome(exc, stage="llm")
                else:
                    outcome = done.result()
                stats[task.lane].add(outcome.metrics)
                label = f"{task.lane} posting {item.posting_id} ({item.source} {item.external_id})"
                if outcome.transport_error:
                    # The server's failure, not the posting's: no row, no attempt; the next run takes it.
                    report.deferred.append(item)
                    report.server_errors.append(f"{label}: {outcome.error}")
                    consecutive += 1
                    log(f"{what}: server failure on {label}, left pending: {outcome.error}")
                    limit = abort_after_consecutive_transport_errors
                    if limit and consecutive >= limit:
                        abort(f"{consecutive} postings in a row met server failures (timeouts, 5xx, 503 busy) after "
                              f"the client's retries; none was charged an attempt; last: {outcome.error}")
                    progress.step()
                    continue
                save(task, outcome)  # committed before the next task is submitted
                report.statuses[str(outcome.status)] += 1
                if outcome.status == LlmStatus.LLM_ERROR:
                    report.failures.append(f"posting {item.posting_id} ({item.source} {item.external_id}): {outcome.error}")
                consecutive = 0
                progress.step()
    finally:
        seconds = time.monotonic() - started
        for report in reports.values():
            report.seconds = seconds
    return reports
