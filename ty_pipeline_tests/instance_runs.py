"""Runs and pool-slot claims written into a real Dagster instance, for the pool-slot tests."""

from __future__ import annotations

import subprocess
import sys
import uuid

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what a kill -9'd run worker leaves."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def add_run(instance: dg.DagsterInstance, status: DagsterRunStatus, worker_pid: int | None = None) -> str:
    initial = DagsterRunStatus.STARTED if status == DagsterRunStatus.FAILURE else status
    run = instance.add_run(DagsterRun(job_name="enrich_partition", run_id=str(uuid.uuid4()), status=initial))
    if worker_pid is not None:
        # What `dagster api execute_run` records when the run worker starts (EngineEventData.in_process).
        instance.report_engine_event(f"Started process for run (pid: {worker_pid}).", run,
                                     EngineEventData.in_process(worker_pid))
    if status == DagsterRunStatus.FAILURE:
        instance.report_run_failed(run)
    assert instance.get_run_by_id(run.run_id).status == status
    return run.run_id


def claim(instance: dg.DagsterInstance, run_id: str, step: str, pool: str = "ollama") -> None:
    status = instance.event_log_storage.claim_concurrency_slot(pool, run_id, step)
    assert status.is_claimed, status
