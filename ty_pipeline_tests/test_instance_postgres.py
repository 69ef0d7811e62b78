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
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline.partitions import berlin_today
from ty_pipeline_tests.conftest import PG_URL, require_postgres
from ty_pipeline_tests.helpers import resources_for

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
