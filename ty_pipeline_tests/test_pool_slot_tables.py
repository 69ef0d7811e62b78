"""The Dagster-free pool-slot reader (issue 13: `ty-pipeline status` in about a second) against Dagster's API.

Slots, runs and run-worker events are written through Dagster into real instances, SQLite (the Quickstart's
dagster.yaml) and PostgreSQL (the production dagster.yaml); `read_held_slots` must report exactly what
`pool_slots.held_slots` reads through Dagster. Dagster is pinned, and this is the test that fails when an
upgrade moves a table or changes how an engine event is serialized.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster_postgres.utils import pg_url_from_config

from ty_pipeline.pool_slot_tables import (
    InstanceConfigError,
    _pid_of_engine_event,
    locate_instance_tables,
    read_held_slots,
)
from ty_pipeline.pool_slots import held_slots
from ty_pipeline_tests.instance_runs import add_run, claim, dead_pid, instance_home

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_YAML = ROOT / "dagster.yaml"


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if request.param == "sqlite":
        yield instance_home(tmp_path)
    else:
        # The production dagster.yaml as shipped, its DAGSTER_PG_URL pointing at a throw-away schema.
        monkeypatch.setenv("DAGSTER_PG_URL", request.getfixturevalue("pg_schema_url"))
        yield instance_home(tmp_path, PRODUCTION_YAML)


def both_readers(home: Path) -> tuple[list[tuple], list[tuple]]:
    tables = locate_instance_tables(home)
    assert tables is not None, "the shipped dagster.yaml files must be read without Dagster"
    ours = sorted(tuple(vars(s).values()) for s in read_held_slots(tables))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dagsters = sorted(tuple(vars(s).values()) for s in held_slots(instance))
    return ours, dagsters


def test_the_reader_reports_what_dagsters_api_reports(home: Path) -> None:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("ollama", 8)
        instance.event_log_storage.set_concurrency_slots("gpu-b", 2)
        ended = add_run(instance, DagsterRunStatus.FAILURE)
        never = add_run(instance, DagsterRunStatus.NOT_STARTED)
        killed = add_run(instance, DagsterRunStatus.STARTED, worker_pid=dead_pid())
        live = add_run(instance, DagsterRunStatus.STARTED, worker_pid=os.getpid())
        no_pid = add_run(instance, DagsterRunStatus.STARTED)
        gone = "f0e5a5a0-0000-4000-8000-00000000dead"  # a run record that no longer exists
        for run_id, step in ((ended, "posting_summaries"), (never, "skill_keywords"), (killed, "ihl_scores"),
                             (live, "posting_summaries"), (live, "skill_keywords"), (no_pid, "ihl_scores"),
                             (gone, "posting_summaries")):
            claim(instance, run_id, step)
        claim(instance, killed, "berufenet_mappings", pool="gpu-b")
        # Lowering a limit below the claimed slots leaves claimed rows marked deleted until they are freed.
        instance.event_log_storage.set_concurrency_slots("ollama", 2)

    ours, dagsters = both_readers(home)
    assert ours == dagsters
    assert len(ours) == 8
    verdicts = {(s[0], s[1], s[2]): (s[4], s[5]) for s in ours}
    assert verdicts[("gpu-b", killed, "berufenet_mappings")][1] is False
    assert verdicts[("ollama", live, "skill_keywords")] == (os.getpid(), True)
    assert verdicts[("ollama", gone, "posting_summaries")] == (None, False)  # record gone: not alive

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.free_concurrency_slots_for_run(killed)
    ours, dagsters = both_readers(home)
    assert ours == dagsters and killed not in {s[1] for s in ours}


def test_an_instance_that_never_ran_anything_holds_no_slot_and_is_not_written(tmp_path: Path) -> None:
    home = instance_home(tmp_path)
    tables = locate_instance_tables(home)
    assert tables is not None and read_held_slots(tables) == []
    assert sorted(p.name for p in home.iterdir()) == ["dagster.yaml"]  # nothing created by reading


def test_postgres_db_settings_give_dagsters_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PASSWORD", "s3cr/t@")
    (tmp_path / "dagster.yaml").write_text(
        "storage:\n  postgres:\n    postgres_db:\n      username: dagster\n      password: {env: PG_PASSWORD}\n"
        "      hostname: db.example\n      db_name: dagster\n      port: 6432\n"
        "      params: {sslmode: require, application_name: ty pipeline}\n",
        encoding="utf-8",
    )
    tables = locate_instance_tables(tmp_path)
    assert tables is not None and tables.sqlite_event_dir is None
    expected = pg_url_from_config({"postgres_db": {
        "username": "dagster", "password": "s3cr/t@", "hostname": "db.example", "db_name": "dagster",
        "port": 6432, "params": {"sslmode": "require", "application_name": "ty pipeline"}}})
    assert tables.index_url == tables.runs_url == expected


def test_a_missing_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    shutil.copy(PRODUCTION_YAML, tmp_path / "dagster.yaml")
    with pytest.raises(InstanceConfigError, match="DAGSTER_PG_URL, which is not set"):
        locate_instance_tables(tmp_path)


@pytest.mark.parametrize("storage", [
    "storage:\n  mysql:\n    mysql_url: mysql://x\n",
    "run_storage:\n  module: dagster_postgres.run_storage\n  class: PostgresRunStorage\n",
    "instance_class:\n  module: my.module\n  class: MyInstance\n",
    "storage:\n  postgres:\n    postgres_db:\n      username: u\n      hostname: h\n      db_name: d\n"
    "      auth_provider: {module: m, class: C}\n",
])
def test_storage_it_does_not_follow_is_left_to_dagster(tmp_path: Path, storage: str) -> None:
    (tmp_path / "dagster.yaml").write_text(storage, encoding="utf-8")
    assert locate_instance_tables(tmp_path) is None


def test_the_pid_is_read_from_either_metadata_form() -> None:
    start = '{"dagster_event": {"message": "Started process for run (pid: 7).", "event_specific_data": '
    assert _pid_of_engine_event(start + '{"metadata_entries": [{"label": "pid", '
                                '"entry_data": {"text": "4242"}}]}}}') == 4242
    assert _pid_of_engine_event(start + '{"metadata": {"pid": {"value": 17}}}}}') == 17
    assert _pid_of_engine_event(start + '{"metadata": {}}}}') is None
    assert _pid_of_engine_event('{"dagster_event": {"message": "Executing steps"}}') is False


def test_status_with_an_instance_imports_neither_dagster_nor_the_clients(tmp_path: Path) -> None:
    """Importing Dagster alone costs the status command its one-second budget (issue 13); numpy, requests and
    pydantic (the HTTP and embedding clients) another 0.15 s, and the command needs none of them."""
    home = instance_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("ollama", 1)
        claim(instance, add_run(instance, DagsterRunStatus.STARTED, worker_pid=dead_pid()), "ihl_scores")
    script = (
        "import io, sys\n"
        "from ty_pipeline import cli\n"
        "out = io.StringIO()\n"
        f"rc = cli.main_with(['status', '--dagster-home', {str(home)!r}, "
        f"'--warehouse-url', 'sqlite:///{tmp_path / 'none.sqlite'}'], out, io.StringIO())\n"
        "heavy = {'dagster', 'numpy', 'requests', 'pydantic', 'torch', 'onnxruntime'}\n"
        "print(rc, 'NOT ALIVE' in out.getvalue(), sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TY_WAREHOUSE_URL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 True []"


def test_the_status_command_falls_back_to_dagster_for_other_storage(tmp_path: Path) -> None:
    """A layout the reader does not follow still gets its slots, through Dagster's API."""
    home = tmp_path / "dagster_home"
    base = tmp_path / "elsewhere"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_storage:\n  module: dagster._core.storage.runs\n  class: SqliteRunStorage\n"
        f"  config: {{base_dir: {base / 'history'}}}\n"
        "event_log_storage:\n  module: dagster._core.storage.event_log\n  class: SqliteEventLogStorage\n"
        f"  config: {{base_dir: {base / 'history' / 'runs'}}}\n",
        encoding="utf-8",
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("ollama", 1)
        killed = add_run(instance, DagsterRunStatus.STARTED, worker_pid=dead_pid())
        claim(instance, killed, "ihl_scores")
    from ty_pipeline import cli

    out = io.StringIO()
    assert cli.main_with(["status", "--dagster-home", str(home),
                          "--warehouse-url", f"sqlite:///{tmp_path / 'none.sqlite'}"], out, io.StringIO()) == 0
    assert f"run {killed} (step ihl_scores) holds a slot but is NOT ALIVE" in out.getvalue()
