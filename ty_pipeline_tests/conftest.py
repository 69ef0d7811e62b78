"""Shared fixtures: real warehouses (SQLite file and PostgreSQL schema) and resource builders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Steps retry transient failures after a pause (ty_pipeline.step_retries); in tests the pause is 0 so a
# retried step costs no wall time. Set before ty_pipeline is imported: the policy is read at load.
os.environ.setdefault("TY_STEP_RETRY_DELAY_S", "0")
# The default embedding backend (onnx) exports the model once and caches it. Tests keep that cache in the
# clone (gitignored), never in the user's or CI runner's home: set here, at import, so both xdist workers
# and every process a test starts (`dagster asset materialize`, the webserver and daemon of the browser
# test) inherit it, and the export happens once per clone (and model version), not once per process.
# Assigned, not defaulted: a developer's own TY_EMBED_CACHE_DIR (a shared production volume) stays untouched.
os.environ["TY_EMBED_CACHE_DIR"] = str(Path(__file__).resolve().parents[1] / ".test-cache" / "onnx")

import pytest
import sqlalchemy as sa

from ty_pipeline.domain.clock import berlin_today
from ty_pipeline.warehouse.engine import dispose_engine, ensure_schema, get_engine
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche
from ty_pipeline_tests.paths import FIXTURES_DIR
from ty_pipeline_tests.pg_schemas import PG_URL, pg_schema, pg_unreachable

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_postgres() -> None:
    """In CI a missing PostgreSQL fails the test; on a laptop without it the test is skipped."""
    exc = pg_unreachable()
    if exc is None:
        return
    problem = f"PostgreSQL at {PG_URL} is unreachable: {exc}"
    if IN_CI:
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Real postings and grading cases shipped with the tests (fixtures/PROVENANCE.md)."""
    return FIXTURES_DIR


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_postgres()
    with pg_schema("t_") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Every test that touches the warehouse runs on both backends."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
        yield url
        dispose_engine(url)
    else:
        yield request.getfixturevalue("pg_schema_url")


@pytest.fixture
def engine(warehouse_url: str) -> sa.Engine:
    """The warehouse schema, empty, on each backend of `warehouse_url` (a module may define its own)."""
    eng = get_engine(warehouse_url)
    ensure_schema(eng)
    return eng


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """An empty warehouse (the schema, no rows) in a SQLite file, for tests that need no PostgreSQL run."""
    url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    eng = get_engine(url)
    ensure_schema(eng)
    yield eng
    dispose_engine(url)


@pytest.fixture
def aa() -> Iterator[FakeJobsuche]:
    """A loopback Jobsuche API whose "today" is Berlin's today (modules may override it)."""
    with FakeJobsuche(today=berlin_today()) as fake:
        yield fake


@pytest.fixture
def db() -> Iterator[FakeDeutscheBank]:
    """A loopback Deutsche Bank careers API (modules may override it)."""
    with FakeDeutscheBank() as fake:
        yield fake
