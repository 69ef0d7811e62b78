"""One job-API step at a time per instance: the configured request pace is the rate the APIs see.

The pace (clients/rate_limit.py) is kept per step; two runs fetching at once (a backfill's runs, the
nightly run beside a backfill) used to call Jobsuche and Deutsche Bank at twice `requests_per_s`. Every
step that calls a job API now runs in the `job_apis` pool, whose limit in the shipped instance configs is 1.

The overlap tests claim slots the way Dagster's step executor does (`InstanceConcurrencyContext`, the
object every run worker claims through before it starts a pooled step) against a real DagsterInstance
configured by the shipped dagster.yaml, with runs recorded in its run storage.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.storage.dagster_run import DagsterRunStatus

from ty_pipeline import cli, defs
from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.domain.pool_names import JOB_APIS_POOL, OLLAMA_POOL
from ty_pipeline_tests.instance_runs import (
    add_run,
    assert_api_steps_of_two_runs_take_turns,
    instance_home,
    pool_of,
)

ROOT = Path(__file__).resolve().parents[1]
JOB_API_RESOURCES = {"jobsuche", "deutsche_bank"}


@pytest.fixture
def quickstart_home(tmp_path: Path) -> Path:
    return instance_home(tmp_path)


def test_the_job_api_assets_run_in_the_job_apis_pool() -> None:
    # The literal is what operators type (`dagster instance concurrency set job_apis N`): pin it.
    assert JOB_APIS_POOL == "job_apis" and OLLAMA_POOL == "ollama"
    assert postings.op.pool == JOB_APIS_POOL
    assert job_descriptions.op.pool == JOB_APIS_POOL


def test_every_step_that_can_call_a_job_api_is_in_the_job_apis_pool() -> None:
    """Derived from the definitions, so a new asset or check given a job-API resource cannot slip past."""
    callers = set()
    for assets_def in defs.assets or []:
        assert isinstance(assets_def, dg.AssetsDefinition)
        if assets_def.required_resource_keys & JOB_API_RESOURCES:
            callers.add(assets_def.op.name)
            assert assets_def.op.pool == JOB_APIS_POOL, assets_def.op.name
    for check_def in defs.asset_checks or []:
        assert isinstance(check_def, dg.AssetChecksDefinition)
        if check_def.required_resource_keys & JOB_API_RESOURCES:
            callers.add(check_def.node_def.name)
            assert check_def.node_def.pools == {JOB_APIS_POOL}, check_def.node_def.name
    assert callers == {"postings", "job_descriptions"}


def test_two_runs_api_steps_do_not_overlap_on_the_quickstart_instance(quickstart_home: Path) -> None:
    with dg.DagsterInstance.from_config(str(quickstart_home)) as instance:
        assert instance.global_op_concurrency_default_limit == 1
        assert_api_steps_of_two_runs_take_turns(instance)


def test_status_lists_a_held_job_apis_slot(
    quickstart_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crashed run's job-API slot shows up in `ty-pipeline status` like an `ollama` one."""
    with dg.DagsterInstance.from_config(str(quickstart_home)) as instance:
        run = instance.get_run_by_id(add_run(instance, DagsterRunStatus.FAILURE))
        assert run is not None
        # Claimed through the executor's path, so the pool is initialised from the shipped default.
        assert InstanceConcurrencyContext(instance, run).claim(pool_of(job_descriptions), "job_descriptions")
    monkeypatch.delenv("TY_WAREHOUSE_URL", raising=False)
    out = io.StringIO()
    args = cli.build_parser().parse_args(["status", "--json", "--dagster-home", str(quickstart_home),
                                          "--warehouse-url", f"sqlite:///{tmp_path / 'none.sqlite'}"])
    assert cli.run_status(args, out, io.StringIO()) == 0
    [slot] = json.loads(out.getvalue())["pool_slots"]
    assert (slot["pool"], slot["run_id"], slot["step_key"], slot["alive"]) == (
        JOB_APIS_POOL, run.run_id, "job_descriptions", False)
