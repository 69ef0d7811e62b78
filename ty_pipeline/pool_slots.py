"""Pool slots in the Dagster instance: who holds them, whether the holder is alive, and freeing by hand.

Read by `ty-pipeline status --dagster-home` (docs: "Failure modes", killed run keeps the `ollama` slot).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType

from ty_pipeline.domain.slot_holders import HeldSlot, judge_slot_holder
from ty_pipeline.pool_slot_tables import check_instance_home, pid_running


def open_instance(dagster_home: str | Path) -> dg.DagsterInstance:
    check_instance_home(dagster_home)
    return dg.DagsterInstance.from_config(str(dagster_home))


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid from the run worker's "Started process for run (pid: N)" engine event, if any."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None or not (event.message or "").startswith("Started process for run"):
            continue
        pid = event.engine_event_data.metadata.get("pid") if event.engine_event_data else None
        if pid is not None:
            try:
                return int(str(pid.value))
            except ValueError:
                return None
    return None


def held_slots(instance: dg.DagsterInstance) -> list[HeldSlot]:
    """Every claimed slot of every pool, with a verdict on its run."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    out: list[HeldSlot] = []
    for pool in sorted(storage.get_concurrency_keys()):
        for claim in storage.get_concurrency_info(pool).claimed_slots:
            run = instance.get_run_by_id(claim.run_id)
            status = run.status.value if run is not None else None
            pid = run_worker_pid(instance, claim.run_id) if run is not None else None
            verdict = judge_slot_holder(status, pid, pid_running(pid) if pid is not None else None)
            out.append(HeldSlot(pool, claim.run_id, claim.step_key, status, pid, verdict.alive, verdict.reason))
    return out


def free_run_slots(instance: dg.DagsterInstance, run_id: str) -> int:
    """Free every slot the run holds (what run monitoring does for ended runs); returns how many."""
    before = sum(1 for s in held_slots(instance) if s.run_id == run_id)
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    return before
