"""One LLM asset run over one partition, without Dagster: select, preflight, skip, work, save.

Order matters for "fail fast": the plan is read-only, the server and every model are checked before
the first row is written, and only then are skipped postings recorded and the worker pool started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import Engine, Table

from ty_pipeline.domain.llm_selection import SUCCESS_STATUSES, LlmStatus, Plan, WorkItem, plan_work
from ty_pipeline.enrichment.metrics import CallStats
from ty_pipeline.enrichment.runner import Outcome, RunReport, run_pool
from ty_pipeline.warehouse.llm_results_store import load_candidates, save_result

SKIPPED_ERROR = "no usable description (missing, or shorter than 100 characters)"


class LlmPipeline(Protocol):
    @property
    def prompt_versions(self) -> list[str]: ...

    @property
    def prompt_version(self) -> str: ...

    @property
    def distinct_models(self) -> list[str]: ...

    def hash_for(self, text: str) -> str: ...

    def base_values(self) -> dict[str, Any]: ...

    def run(self, item: WorkItem) -> Outcome: ...


@dataclass(frozen=True)
class RunSettings:
    workers: int = 2
    max_attempts: int = 3
    max_postings: int | None = 300  # None = no cap
    max_description_chars: int = 12000
    abort_after_consecutive_transport_errors: int = 3


@dataclass
class PartitionRun:
    plan: Plan
    report: RunReport = field(default_factory=RunReport)
    stats: CallStats = field(default_factory=CallStats)
    server_version: str | None = None  # None: the server was not needed (nothing to compute)
    seconds: float = 0.0

    @property
    def pending(self) -> int:
        """Postings that still need the LLM after this run: beyond the cap, stopped by an abort, or
        deferred by a server failure (never charged an attempt)."""
        return len(self.plan.pending) + len(self.report.not_done) + len(self.report.deferred)

    @property
    def failed(self) -> int:
        return self.report.statuses[LlmStatus.LLM_ERROR]

    @property
    def truncated_inputs(self) -> int:
        return sum(1 for item in self.plan.to_compute if item.truncated)


def utcnow() -> datetime:
    """Naive UTC, stored the same way in SQLite and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def enrich_partition(
    *,
    engine: Engine,
    table: Table,
    day: date,
    sources: Sequence[str],
    pipeline: LlmPipeline,
    client: Any,
    settings: RunSettings,
    log: Callable[[str], None],
    what: str,
) -> PartitionRun:
    """Raises the client's `OllamaUnavailable` / `OllamaModelMissing` from the preflight, before any write."""
    started = time.monotonic()
    candidates = load_candidates(engine, table, day, sources)
    plan = plan_work(
        candidates,
        hash_for=pipeline.hash_for,
        max_attempts=settings.max_attempts,
        max_postings=settings.max_postings,
        max_description_chars=settings.max_description_chars,
    )
    run = PartitionRun(plan)
    log(
        f"{what} {day}: {plan.in_scope} postings in scope ({', '.join(sources)}): {len(plan.to_compute)} to compute "
        f"({plan.retries} retries), {plan.cached} cached, {len(plan.skipped)} without description, "
        f"{plan.exhausted} out of attempts, {len(plan.pending)} left pending by the cap"
    )
    if plan.to_compute:
        run.server_version = client.preflight(pipeline.distinct_models)

    base = pipeline.base_values()
    for item in plan.skipped:
        save_result(
            engine, table, posting_id=item.posting_id, status=LlmStatus.SKIPPED_NO_DESCRIPTION,
            input_hash=item.input_hash, attempts=0, error=SKIPPED_ERROR, values=base, success=False, now=utcnow(),
        )

    def save(item: WorkItem, outcome: Outcome) -> None:
        save_result(
            engine, table, posting_id=item.posting_id, status=outcome.status, input_hash=item.input_hash,
            attempts=item.attempt, error=outcome.error, values=outcome.values,
            success=outcome.status in SUCCESS_STATUSES, now=utcnow(), skill_items=outcome.items,
        )

    run.report = run_pool(
        plan.to_compute, pipeline.run, save,
        workers=settings.workers, stats=run.stats, log=log, what=what,
        abort_after_consecutive_transport_errors=settings.abort_after_consecutive_transport_errors,
    )
    run.seconds = time.monotonic() - started
    return run
