"""One LLM enrichment run over one partition, without Dagster: select, preflight, skip, work, save.

One run drives every selected lane (summaries, skills, IHL) at once over one shared client, so the
hosts' slots are filled from all three assets' work instead of one asset at a time (README "LLM
throughput"). Each lane keeps its own plan, table, report and cost figures.

Order matters for "fail fast": the plans are read-only, the servers and every model are checked before
the first row is written, and only then are skipped postings recorded and the worker pool started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

from sqlalchemy import Engine, Table

from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.llm_selection import (
    LLM_MAX_ATTEMPTS,
    SUCCESS_STATUSES,
    LlmStatus,
    Plan,
    WorkItem,
    plan_work,
)
from ty_pipeline.enrichment.metrics import CallStats
from ty_pipeline.enrichment.runner import Outcome, RunReport, Task, interleave, run_pool
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
    workers: int = 0  # tasks in flight; 0 = twice the client's slots (see `tasks_in_flight`)
    max_attempts: int = LLM_MAX_ATTEMPTS
    max_postings: int | None = 300  # None = no cap
    max_description_chars: int = 12000
    abort_after_consecutive_transport_errors: int = 3


DEFAULT_SLOTS = 4  # what a client without a slot budget (one plain server) is assumed to run at once


def client_slots(client: Any) -> int:
    """The calls the client's hosts run at once: its slot budget, else one default server."""
    slots = getattr(client, "total_slots", None)
    return int(slots) if isinstance(slots, int) and slots > 0 else DEFAULT_SLOTS


def tasks_in_flight(settings: RunSettings, client: Any) -> int:
    """Tasks submitted at once. The client holds each call until its host has a free slot, so twice
    the slots keeps a call waiting for every slot that frees (a summary's grader pair or an IHL chain
    holds a task for several calls) without holding many unsaved results."""
    return settings.workers if settings.workers > 0 else 2 * client_slots(client)


@dataclass(frozen=True)
class Lane:
    """One LLM asset inside an enrichment run."""

    name: str
    table: Table
    pipeline: LlmPipeline


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


def _shared_text(item: WorkItem, texts: dict[str, str]) -> WorkItem:
    shared = texts.setdefault(item.text, item.text)
    return item if shared is item.text else replace(item, text=shared)


def enrich_partition(
    *,
    engine: Engine,
    lanes: Sequence[Lane],
    day: date,
    sources: Sequence[str],
    client: Any,
    settings: RunSettings,
    log: Callable[[str], None],
    what: str,
) -> dict[str, PartitionRun]:
    """Raises the client's `OllamaUnavailable` / `OllamaModelMissing` from the preflight, before any write."""
    started = time.monotonic()
    runs: dict[str, PartitionRun] = {}
    by_name = {lane.name: lane for lane in lanes}
    texts: dict[str, str] = {}
    for lane in lanes:
        candidates = load_candidates(engine, lane.table, day, sources)
        plan = plan_work(
            candidates,
            hash_for=lane.pipeline.hash_for,
            max_attempts=settings.max_attempts,
            max_postings=settings.max_postings,
            max_description_chars=settings.max_description_chars,
        )
        # Every lane builds the same posting text: keep one copy per posting, not one per lane (a
        # 16,000-posting day holds tens of MB of text per copy).
        plan.to_compute = [_shared_text(item, texts) for item in plan.to_compute]
        plan.pending = [_shared_text(item, texts) for item in plan.pending]
        del candidates
        runs[lane.name] = PartitionRun(plan)
        log(
            f"{lane.name} {day}: {plan.in_scope} postings in scope ({', '.join(sources)}): {len(plan.to_compute)} to "
            f"compute ({plan.retries} retries), {plan.cached} cached, {len(plan.skipped)} without description, "
            f"{plan.exhausted} out of attempts, {len(plan.pending)} left pending by the cap"
        )
    if any(run.plan.to_compute for run in runs.values()):
        models = [m for lane in lanes if runs[lane.name].plan.to_compute for m in lane.pipeline.distinct_models]
        version = client.preflight(list(dict.fromkeys(models)))
        for run in runs.values():
            run.server_version = version

    for lane in lanes:
        base = lane.pipeline.base_values()
        for item in runs[lane.name].plan.skipped:
            save_result(
                engine, lane.table, posting_id=item.posting_id, status=LlmStatus.SKIPPED_NO_DESCRIPTION,
                input_hash=item.input_hash, attempts=0, error=SKIPPED_ERROR, values=base, success=False, now=utcnow(),
            )

    def work(task: Task) -> Outcome:
        return by_name[task.lane].pipeline.run(task.item)

    def save(task: Task, outcome: Outcome) -> None:
        item = task.item
        save_result(
            engine, by_name[task.lane].table, posting_id=item.posting_id, status=outcome.status,
            input_hash=item.input_hash, attempts=item.attempt, error=outcome.error, values=outcome.values,
            success=outcome.status in SUCCESS_STATUSES, now=utcnow(), skill_items=outcome.items,
        )

    tasks = interleave({name: run.plan.to_compute for name, run in runs.items()})
    workers = tasks_in_flight(settings, client)
    if tasks:
        log(f"{what} {day}: {len(tasks)} tasks over {len(lanes)} asset(s), {workers} in flight for "
            f"{client_slots(client)} server slot(s)")
    reports = run_pool(
        tasks, work, save, lanes=list(runs), workers=workers, stats={name: run.stats for name, run in runs.items()},
        log=log, what=what, abort_after_consecutive_transport_errors=settings.abort_after_consecutive_transport_errors,
    )
    seconds = time.monotonic() - started
    for name, run in runs.items():
        run.report = reports[name]
        run.seconds = seconds
    return runs
