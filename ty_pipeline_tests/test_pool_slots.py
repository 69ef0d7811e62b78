"""Defect 6 of issue 9: a killed run keeps its `ollama` pool slot.

Against a real DagsterInstance (SQLite storage in a temporary DAGSTER_HOME, configured by the
Quickstart dagster.yaml): `ty-pipeline status --dagster-home` names runs that hold a slot but are not
alive (ended, never started, or started with a dead run worker process), leaves live ones alone, and
`ty-pipeline free-slots` frees a dead run's slot so the next LLM step can claim it.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus

from ty_pipeline import cli
from ty_pipeline.automation.jobs import build_jobs
from ty_pipeline.domain.slot_holders import judge_slot_holder
from ty_pipeline_tests.instance_runs import add_run, claim, dead_pid, instance_home

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return instance_home(tmp_path)


def status_json(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    monkeypatch.delenv("TY_WAREHOUSE_URL", raising=False)
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["status", "--json", "--dagster-home", str(home),
                                          "--warehouse-url", f"sqlite:///{tmp_path / 'none.sqlite'}"])
    assert cli.run_status(args, out, err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_status_names_slot_holders_that_are_not_alive_and_free_slots_frees_them(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("ollama", 4)
        ended = add_run(instance, DagsterRunStatus.FAILURE)
        never = add_run(instance, DagsterRunStatus.NOT_STARTED)
        killed = add_run(instance, DagsterRunStatus.STARTED, worker_pid=dead_pid())
        live = add_run(instance, DagsterRunStatus.STARTED, worker_pid=os.getpid())
        for run_id, step in ((ended, "posting_summaries"), (never, "skill_keywords"), (killed, "ihl_scores"),
                             (live, "posting_summaries")):
            claim(instance, run_id, step)

    slots = {s["run_id"]: s for s in status_json(home, monkeypatch, tmp_path)["pool_slots"]}
    assert set(slots) == {ended, never, killed, live}
    assert {r for r, s in slots.items() if not s["alive"]} == {ended, never, killed}
    assert slots[ended]["reason"] == "the run ended (FAILURE)"
    assert slots[never]["reason"] == "the run never started (NOT_STARTED)"
    assert slots[killed]["reason"].startswith("the run is STARTED but its run worker process")
    assert slots[killed]["step_key"] == "ihl_scores" and slots[live]["alive"]

    # The text form names the dead run and the command that frees it.
    out = io.StringIO()
    args = cli.build_parser().parse_args(["status", "--dagster-home", str(home),
                                          "--warehouse-url", f"sqlite:///{tmp_path / 'none.sqlite'}"])
    assert cli.run_status(args, out, io.StringIO()) == 0
    text = out.getvalue()
    assert f"run {killed} (step ihl_scores) holds a slot but is NOT ALIVE" in text
    assert f"ty-pipeline free-slots {killed}" in text and f"free-slots {live}" not in text

    # Freeing: refused for the live run, done for the killed one; the pool then has a free slot again.
    err = io.StringIO()
    assert cli.main_with(["free-slots", live, "--dagster-home", str(home)], io.StringIO(), err) == 1
    assert "looks alive" in err.getvalue()
    out = io.StringIO()
    assert cli.main_with(["free-slots", killed, "--dagster-home", str(home)], out, io.StringIO()) == 0
    assert out.getvalue() == f"freed 1 slot(s) of run {killed} in pool(s) ollama\n"
    remaining = {s["run_id"] for s in status_json(home, monkeypatch, tmp_path)["pool_slots"]}
    assert remaining == {ended, never, live}


def test_a_freed_slot_unblocks_the_next_step_of_a_full_pool(home: Path) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("ollama", 1)
        killed = add_run(instance, DagsterRunStatus.STARTED, worker_pid=dead_pid())
        claim(instance, killed, "posting_summaries")
        waiting = add_run(instance, DagsterRunStatus.STARTED, worker_pid=os.getpid())
        blocked = instance.event_log_storage.claim_concurrency_slot("ollama", waiting, "skill_keywords")
        assert not blocked.is_claimed  # "blocked by limit for pool ollama"
    assert cli.main_with(["free-slots", killed, "--dagster-home", str(home)], io.StringIO(), io.StringIO()) == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.event_log_storage.claim_concurrency_slot("ollama", waiting, "skill_keywords").is_claimed


def test_quickstart_instance_config_frees_slots_of_dead_runs(home: Path) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled
        settings = instance.run_monitoring_settings
        assert settings["free_slots_after_run_end_seconds"] <= 60
        assert settings["max_runtime_seconds"] <= 3600 and settings["cancel_timeout_seconds"] <= 120
        assert instance.run_monitoring_max_resume_run_attempts == 0  # `dagster dev` cannot resume runs
    # No job carries its own max-runtime tag, which would override the instance's shorter limit.
    for job in build_jobs([dg.AssetKey("postings")]):
        assert not {"dagster/max_runtime", "dagster/max_runtime_seconds"} & set(job.tags or {})


def test_slot_holder_rules() -> None:
    assert not judge_slot_holder(None, None, None).alive
    assert not judge_slot_holder("CANCELED", 12, True).alive
    assert not judge_slot_holder("NOT_STARTED", None, None).alive
    assert not judge_slot_holder("STARTED", 12, False).alive
    assert judge_slot_holder("STARTED", 12, True).alive
    assert judge_slot_holder("STARTED", None, None).alive  # no pid recorded: cannot tell, keep the slot
    assert judge_slot_holder("CANCELING", None, None).alive
