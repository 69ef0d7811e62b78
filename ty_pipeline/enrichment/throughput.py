"""One run's throughput per LLM host, from the client's counters (Dagster-free)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.llm_capacity import HostRun, RunThroughput, posting_equivalents
from ty_pipeline.enrichment.partition_run import PartitionRun, client_slots


def host_runs(client: Any, runs: Mapping[str, PartitionRun]) -> tuple[HostRun, ...]:
    """Per-host calls and busy seconds: the host pool's own counters, or for a single plain client the
    run's call statistics as one host."""
    stats = getattr(client, "host_stats", None)
    if callable(stats):
        return tuple(HostRun(s.host, s.slots, s.calls, s.busy_s) for s in stats())
    calls = sum(run.stats.calls for run in runs.values())
    busy = sum(run.stats.seconds for run in runs.values())
    return (HostRun(str(getattr(client, "shown_url", "llm")), client_slots(client), calls, busy),)


def run_throughput(client: Any, runs: Mapping[str, PartitionRun]) -> RunThroughput:
    done = {name: run.report.saved for name, run in runs.items()}
    wall = max((run.seconds for run in runs.values()), default=0.0)
    return RunThroughput(
        finished_at=utcnow(), wall_s=wall, postings=posting_equivalents(done),
        hosts=host_runs(client, runs),
    )
