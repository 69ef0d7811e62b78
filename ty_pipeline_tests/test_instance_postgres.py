"""The production `dagster.yaml` works: a PostgreSQL-backed instance materializes a partition."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.domain.clock import berlin_today
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline_tests.conftest import require_postgres
from ty_pipeline_tests.helpers import resources_for
from ty_pipeline_tests.pg_schemas import PG_URL
from ty_pipeline_tests.test_job_api_pool import assert_api_steps_of_two_runs_take_turns

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dagster_pg_url() -> Iterator[str]:
    require_postgres()
    name = f"ty_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_URL).set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
            ), {"n": name})
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def test_production_instance_config_materializes_a_partition(
    tmp_path: Path, dagster_pg_url: str, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    day = berlin_today() - timedelta(days=1)  # the newest sample day
    assert day in SampleSource(ROOT / "data" / "sample", berlin_today()).sample_dates()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = dg.materialize(
            [postings, job_descriptions],
            partition_key=day.isoformat(),
            instance=instance,
            resources=resources_for(warehouse_url, sources="sample"),
        )
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey("postings"))
        assert event is not None and event.dagster_event is not None
        assert event.dagster_event.partition == day.isoformat()
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        assert metadata["new"].value > 0
        records = instance.fetch_materializations(dg.AssetKey("job_descriptions"), limit=5).records
        assert len(records) == 1


def test_ollama_pool_limit_is_honoured_across_runs(tmp_path: Path, dagster_pg_url: str) -> None:
    """Two runs launched at once on the production instance: their `ollama` steps never overlap."""
    import json
    import os
    import subprocess
    import sys
    import time

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    spans_file = tmp_path / "spans.jsonl"
    env = {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_PG_URL": dagster_pg_url,
           "POOL_SPANS": str(spans_file), "PYTHONPATH": str(ROOT)}
    dagster = [sys.executable, "-m", "dagster"]
    # dagster.yaml's pools.default_limit is 1; set it explicitly as an operator would.
    subprocess.run([*dagster, "instance", "concurrency", "set", "ollama", "1"], env=env, check=True,
                   capture_output=True, timeout=120)
    cmd = [*dagster, "asset", "materialize", "-m", "ty_pipeline_tests.pool_location", "--select", "pooled_llm_step"]
    # The second run starts while the first holds the slot. Launched in the same instant, two claims can
    # both win: Dagster 1.13 reads and takes a free slot row in two statements on an autocommit connection
    # (seen once in this test: both steps started within 0.1 s). In production runs start seconds apart.
    started = Path(str(spans_file) + ".started")
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert first.poll() is None, first.communicate()[0][-2000:]
        assert time.monotonic() < deadline, "the first run's step did not start within 120 s"
        time.sleep(0.05)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = [first, second]
    # Release the first step once the second run's step is registered for the pool and waiting.
    instance_db = sa.create_engine(dagster_pg_url)
    try:
        while True:
            with instance_db.connect() as conn:
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pending_steps WHERE concurrency_key = 'ollama'")).scalar_one()
            if waiting >= 2:
                break
            assert second.poll() is None, second.communicate()[0][-2000:]
            assert time.monotonic() < deadline + 120, "the second run's step never queued for the pool"
            time.sleep(0.1)
    finally:
        instance_db.dispose()
        Path(str(spans_file) + ".release").touch()
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs[0][-2000:] + outputs[1][-2000:]
    spans = sorted(json.loads(line) for line in spans_file.read_text().splitlines())
    assert len(spans) == 2
    assert spans[1][0] >= spans[0][1], f"the two pooled steps overlapped: {spans}"
    assert any("blocked by limit for pool ollama" in out for out in outputs)


def test_job_apis_pool_limit_is_one_on_the_production_instance(tmp_path: Path, dagster_pg_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The production `dagster.yaml` gives the `job_apis` pool one slot: two runs' job-API steps take turns."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.global_op_concurrency_default_limit == 1
        assert_api_steps_of_two_runs_take_turns(instance)
