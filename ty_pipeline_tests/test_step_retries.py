"""The step RetryPolicy (issue 9, "Also") and one-line setting errors in step failures (defect 14).

Transient failures (a dropped database connection) are retried with backoff and the step succeeds;
permanent ones (a wrong setting, a damaged file) fail once, with one line naming the variable.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.assets.postings import postings
from ty_pipeline.clients.http_retry import SourceError
from ty_pipeline.clients.jobsuche import SearchWindowExceeded
from ty_pipeline.domain.kldb_catalog import load_seed_catalog
from ty_pipeline.professions.catalog import DEFAULT_SEED_CATALOG, SEED
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import STEP_RETRY_POLICY, is_transient, retried_asset, step_retry_policy
from ty_pipeline.warehouse.engine import dispose_engine, get_engine
from ty_pipeline.warehouse.schema import berufenet_catalog as catalog_table
from ty_pipeline_tests.berufenet_fakes import fake_embedder
from ty_pipeline_tests.fakes.tcp_proxy import DroppingTcpProxy
from ty_pipeline_tests.helpers import resources_for, setting_failure


def build_catalog(warehouse_url: str, run_config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [berufenet_catalog],
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": fake_embedder(),
                   "profession_catalog": ProfessionCatalogResource(kldb_csv=SEED),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        raise_on_error=False, run_config=run_config,
    )


def retries(result: dg.ExecuteInProcessResult) -> int:
    return len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])


def failure_description(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def test_a_dropped_warehouse_connection_is_retried_and_the_step_succeeds(pg_schema_url: str) -> None:
    url = sa.engine.make_url(pg_schema_url)
    with DroppingTcpProxy(url.host or "127.0.0.1", url.port or 5432, drop_first=2) as proxy:
        proxied = pg_schema_url.replace(f":{url.port or 5432}/", f":{proxy.port}/", 1)
        assert proxied != pg_schema_url
        try:
            result = build_catalog(proxied)
            assert result.success
            assert proxy.dropped == 2 and retries(result) == 2  # one retry per dropped connection
            with get_engine(proxied).connect() as conn:
                stored = conn.execute(sa.select(sa.func.count()).select_from(catalog_table)).scalar_one()
            assert stored == len(load_seed_catalog(DEFAULT_SEED_CATALOG))
        finally:
            dispose_engine(proxied)


def test_an_unreachable_warehouse_fails_after_the_retries_in_one_redacted_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again below: connections are refused
    url = f"postgresql://postgres:s3cret@127.0.0.1:{port}/test"
    try:
        result = build_catalog(url)
    finally:
        dispose_engine(url)
    assert not result.success
    assert STEP_RETRY_POLICY is not None and retries(result) == STEP_RETRY_POLICY.max_retries
    message = failure_description(result)
    assert message.startswith(f"TY_WAREHOUSE_URL='postgresql://127.0.0.1:{port}': the warehouse cannot be used")
    assert "\n" not in message and "s3cret" not in message
    assert "s3cret" not in str([e.message for e in result.all_events])


@pytest.mark.parametrize(("url", "shown"), [("garbage", "garbage"), ("mysql://root:pw@db/x", "mysql://db")])
def test_a_garbage_warehouse_url_fails_once_naming_the_variable(url: str, shown: str, tmp_path: Path) -> None:
    # Given by run config (the launchpad): refused when Dagster builds the resource, before the step runs.
    result = build_catalog(f"sqlite:///{tmp_path / 'warehouse.sqlite'}",
                           run_config={"resources": {"warehouse": {"config": {"url": url}}}})
    assert not result.success and retries(result) == 0
    message = setting_failure(result)
    assert message.startswith(f"TY_WAREHOUSE_URL='{shown}' is not valid: expected an SQLAlchemy URL")
    assert "\n" not in message and "pw@" not in str([e.message for e in result.all_events])


def test_an_unknown_posting_source_fails_once_naming_ty_sources(tmp_path: Path) -> None:
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.sqlite'}"
    result = dg.materialize([postings], partition_key="2026-01-05", raise_on_error=False,
                            resources=resources_for(warehouse_url),
                            run_config={"resources": {"job_sources": {"config": {"enabled": "arbeitsagentur,jobboerse"}}}})
    assert not result.success and retries(result) == 0
    message = setting_failure(result)
    assert message == ("TY_SOURCES='arbeitsagentur,jobboerse' is not valid: expected a comma list of arbeitsagentur, "
                       "deutsche_bank, sample")
    dispose_engine(warehouse_url)


def test_which_errors_are_transient() -> None:
    dropped = sa_exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    assert is_transient(dropped)
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("while fetching") from inner
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(ValueError("bad value"))
    assert is_transient(SourceError("Jobsuche answered 503 after 3 retries", status=503))
    assert is_transient(SourceError("connection reset"))  # no status: the connection failed
    assert not is_transient(SourceError("Jobsuche answered 403", status=403))
    assert not is_transient(SearchWindowExceeded("page 101 is beyond the 10,000-result window"))
    assert not is_transient(sa_exc.IntegrityError("INSERT", {}, Exception("duplicate key")))


def test_retry_policy_settings() -> None:
    policy = step_retry_policy({"TY_STEP_RETRY_DELAY_S": "2.5", "TY_STEP_MAX_RETRIES": "5"})
    assert policy is not None
    assert (policy.max_retries, policy.delay, policy.backoff) == (5, 2.5, dg.Backoff.EXPONENTIAL)
    assert step_retry_policy({"TY_STEP_MAX_RETRIES": "0"}) is None
    default = step_retry_policy({})
    assert default is not None and (default.max_retries, default.delay) == (3, 15.0)
    with pytest.raises(ValueError, match=r"^TY_STEP_RETRY_DELAY_S='soon' is not valid: expected a number >= 0"):
        step_retry_policy({"TY_STEP_RETRY_DELAY_S": "soon"})


def test_every_asset_carries_the_step_retry_policy() -> None:
    from ty_pipeline.definitions import defs

    assets_defs = [a for a in defs.resolve_asset_graph().assets_defs if a.keys]  # not the standalone checks
    assert sum(len(a.keys) for a in assets_defs) >= 11  # 9 definitions: llm_enrichment holds three assets
    for assets_def in assets_defs:
        assert assets_def.node_def.retry_policy == STEP_RETRY_POLICY, assets_def.keys


def test_failures_carry_no_credentials_and_only_transient_ones_are_retried() -> None:
    secret_url = "http://ops:tok3n@127.0.0.1:9/api/v1?key=abc"
    raised: list[str] = []

    @retried_asset(name="flaky_http")
    def flaky_http() -> None:
        raised.append("http")
        raise requests.ConnectionError(f"Max retries exceeded: {secret_url}")

    @retried_asset(name="broken_value")
    def broken_value() -> None:
        raised.append("value")
        raise ValueError(f"cannot parse the answer of {secret_url}\nsecond line")

    http = dg.materialize([flaky_http], raise_on_error=False)
    value = dg.materialize([broken_value], raise_on_error=False)
    assert STEP_RETRY_POLICY is not None
    assert raised.count("http") == STEP_RETRY_POLICY.max_retries + 1 and raised.count("value") == 1
    assert failure_description(http) == "ConnectionError: Max retries exceeded: http://127.0.0.1:9"
    assert failure_description(value) == (
        "ValueError: cannot parse the answer of http://127.0.0.1:9 (not retried: a permanent error)")
    for result in (http, value):
        stored = str(result.all_events)  # messages, error info and metadata as the event log keeps them
        assert "tok3n" not in stored and "key=abc" not in stored
        assert "Traceback" in stored  # the redacted traceback is kept for debugging
