"""Runs and pool-slot claims written into a real Dagster instance, for the pool-slot tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
from dagster._core.events import EngineEventData
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.domain.pool_names import JOB_APIS_POOL

QUICKSTART_YAML = Path(__file__).resolve().parents[1] / "deploy" / "quickstart" / "dagster.yaml"


def instance_home(parent: Path, config: Path = QUICKSTART_YAML) -> Path:
    """A fresh DAGSTER_HOME under `parent` configured by `config` (default: the Quickstart's dagster.yaml)."""
    home = parent / "dagster_home"
    home.mkdir()
    shutil.copy(config, home / "dagster.yaml")
    return home


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


def pool_of(assets_def: dg.AssetsDefinition) -> str:
    pool = assets_def.op.pool
    assert pool == JOB_APIS_POOL, f"{assets_def.op.name} runs in pool {pool!r}"
    return pool


def assert_api_steps_of_two_runs_take_turns(instance: dg.DagsterInstance) -> None:
    """Run A's `postings` step holds the pool; run B's `job_descriptions` step (another day, or a second
    backfill run) must wait until A's step has ended, then gets the slot."""
    first = instance.get_run_by_id(add_run(instance, DagsterRunStatus.STARTED))
    second = instance.get_run_by_id(add_run(instance, DagsterRunStatus.STARTED))
    assert first is not None and second is not None
    with InstanceConcurrencyContext(instance, first) as a, InstanceConcurrencyContext(instance, second) as b:
        assert a.claim(pool_of(postings), "postings")
        # The shipped default limit initialised the new pool on first use: one slot.
        assert instance.event_log_storage.get_concurrency_info(JOB_APIS_POOL).slot_count == 1
        assert not b.claim(pool_of(job_descriptions), "job_descriptions")
        assert b.has_pending_claims()
        a.free_step("postings")  # A's step ended
        # B's step retries its claim, as the executor does while "blocked by limit for pool job_apis".
        deadline = time.monotonic() + 30
        while not b.claim(pool_of(job_descriptions), "job_descriptions"):
            assert time.monotonic() < deadline, "the waiting step never got the freed slot"
            time.sleep(0.1)
        b.free_step("job_descriptions")
