"""Reads and writes of `llm_throughput`: what each LLM enrichment run achieved per host."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from ty_pipeline.domain.llm_capacity import HostRun, RunThroughput
from ty_pipeline.warehouse.schema import llm_throughput

RECENT_RUNS = 7  # about a week of nights: recent enough to follow a changed fleet, enough to smooth one bad night


def record_run(
    engine: Engine, *, run_id: str, day: date, run: RunThroughput,
) -> None:
    """One row per host; a re-executed run replaces its rows."""
    rows = [
        {
            "run_id": run_id[:64], "host": h.host[:255], "partition_date": day, "finished_at": run.finished_at,
            "wall_s": run.wall_s, "postings": run.postings, "slots": h.slots, "calls": h.calls, "busy_s": h.busy_s,
        }
        for h in run.hosts
    ]
    with engine.begin() as conn:
        conn.execute(delete(llm_throughput).where(llm_throughput.c.run_id == run_id[:64]))
        if rows:
            conn.execute(insert(llm_throughput), rows)


def recent_runs(engine: Engine, *, limit: int = RECENT_RUNS, before: datetime | None = None) -> list[RunThroughput]:
    """The last `limit` runs that did work, newest first."""
    t = llm_throughput
    query = select(t).where(t.c.postings > 0).order_by(t.c.finished_at.desc(), t.c.run_id)
    if before is not None:
        query = query.where(t.c.finished_at < before)
    # Row values as the driver returns them (datetime, float, int, str per column of llm_throughput).
    runs: dict[str, list[Mapping[str, Any]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query).mappings():
            if row["run_id"] not in runs and len(runs) >= limit:
                break
            runs.setdefault(row["run_id"], []).append(dict(row))
    return [_throughput(rows) for rows in runs.values()]


def _throughput(rows: Sequence[Mapping[str, Any]]) -> RunThroughput:
    first = rows[0]
    return RunThroughput(
        finished_at=first["finished_at"],
        wall_s=float(first["wall_s"]),
        postings=float(first["postings"]),
        hosts=tuple(
            HostRun(str(r["host"]), int(r["slots"]), int(r["calls"]), float(r["busy_s"]))
            for r in rows
        ),
    )
