"""The LLM hosts part of `ty-pipeline status`: postings/hour per host over recent runs and the ETA of
the pending LLM work against the 06:00 deadline (Dagster-free, read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ty_pipeline.domain.llm_capacity import POSTING_CALLS, eta, host_rates, posting_equivalents, total_rate
from ty_pipeline.warehouse.llm_throughput_store import RECENT_RUNS, recent_runs
from ty_pipeline.warehouse.status_queries import StatusReport


def llm_capacity(engine: Engine | None, report: StatusReport, now: datetime) -> dict[str, Any]:
    """`now` aware. Pending work is the shown partitions' pending LLM postings, weighted by calls."""
    runs = []
    if engine is not None:
        try:
            runs = recent_runs(engine)
        except SQLAlchemyError:
            runs = []  # no llm_throughput table yet: nothing measured
    pending = {s.spec.asset: s.totals.pending for s in report.assets if s.built and s.spec.asset in POSTING_CALLS}
    rate = total_rate(runs)
    when = eta(round(posting_equivalents(pending)), rate, now)
    return {
        "runs": len(runs),
        "postings_per_hour": round(rate, 1) if rate else None,
        "hosts": [
            {"host": r.host, "slots": r.slots, "postings_per_hour": round(r.postings_per_hour, 1), "runs": r.runs}
            for r in host_rates(runs)
        ],
        "pending_postings": when.pending,
        "hours_needed": None if when.hours_needed is None else round(when.hours_needed, 2),
        "hours_left": round(when.hours_left, 2),
        "before_deadline": when.before_deadline,
        "eta": when.text(),
    }


def render_llm_capacity(data: dict[str, Any]) -> str:
    lines = [f"LLM hosts (last {data['runs']} of up to {RECENT_RUNS} enrichment runs)"]
    if not data["hosts"]:
        lines.append("  no enrichment run measured yet")
    for host in data["hosts"]:
        lines.append(f"  {host['host']:<40} {host['slots']:>4} slots {host['postings_per_hour']:>10,.0f} postings/h "
                     f"({host['runs']} runs)")
    if data["postings_per_hour"]:
        lines.append(f"  all hosts: {data['postings_per_hour']:,.0f} postings/h")
    lines.append(f"  night: {data['eta']}")
    return "\n".join(lines) + "\n"
