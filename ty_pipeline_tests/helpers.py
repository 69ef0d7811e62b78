"""Builders shared by tests: resources pointed at fakes and a warehouse, with test-friendly pacing."""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.definitions.sensor_definition import SensorExecutionData

from ty_pipeline.automation.berufenet_sensor import berufenet_failed_titles_sensor
from ty_pipeline.domain.failed_titles import PARTITIONS_NAME
from ty_pipeline.professions.catalog import SEED
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.job_sources import JobSourcesResource
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.setting_fields import InvalidSetting
from ty_pipeline.resources.warehouse import WarehouseResource

UNUSED_URL = "http://127.0.0.1:9"  # discard port: any call here fails fast with "connection refused"


def resources_for(
    warehouse_url: str,
    *,
    aa_url: str = UNUSED_URL,
    db_url: str = UNUSED_URL,
    sources: str = "arbeitsagentur,deutsche_bank",
    **overrides: Any,
) -> dict[str, Any]:
    """Resources as `definitions.build_resources` makes them, minus politeness pacing and long backoffs."""
    return {
        "warehouse": WarehouseResource(url=warehouse_url),
        "jobsuche": JobsucheResource(
            base_url=aa_url, requests_per_s=1000.0, backoff_base_s=0.01, max_retries=2,
            timeout_s=overrides.pop("aa_timeout_s", 5.0), page_size=overrides.pop("jobsuche_page_size", 100),
        ),
        "deutsche_bank": DeutscheBankResource(
            base_url=db_url, requests_per_s=1000.0, backoff_base_s=0.01, max_retries=2,
            page_size=overrides.pop("db_page_size", 100),
        ),
        "job_sources": JobSourcesResource(enabled=sources),
        # No Ollama unless a test passes its fake: a call fails fast with "connection refused".
        "ollama": OllamaResource(host=UNUSED_URL, max_retries=0, connect_timeout_s=1.0),
        "llm_scope": LlmScopeResource(),
        # The seed catalog: 146 rows build in a blink; the default (the full KldB directory) has 20,000.
        "profession_catalog": ProfessionCatalogResource(kldb_csv=SEED),
        **overrides,
    }


def tick_failed_titles_sensor(
    instance: dg.DagsterInstance, resources: dict[str, Any], cursor: str | None = None
) -> SensorExecutionData:
    """One tick of the failed-titles sensor, and what the daemon does with it: the dynamic partitions the
    tick adds or deletes are registered on `instance` (`evaluate_tick` alone only returns the requests)."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = berufenet_failed_titles_sensor.evaluate_tick(context)
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(PARTITIONS_NAME, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(PARTITIONS_NAME, key)
    return result


def table_rows(warehouse_url: str, *tables: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the named warehouse tables in primary-key order, timestamps included: compare two
    of these to show that a rerun changed nothing."""
    import sqlalchemy as sa

    from ty_pipeline.warehouse.engine import get_engine
    from ty_pipeline.warehouse.schema import metadata

    with get_engine(warehouse_url).connect() as conn:
        return {
            name: [dict(r._mapping) for r in conn.execute(
                sa.select(metadata.tables[name]).order_by(*metadata.tables[name].primary_key.columns))]
            for name in tables
        }


def setting_failure(result: dg.ExecuteInProcessResult) -> str:
    """The one-line setting error a run failed with when Dagster built a resource from its run config
    (`resources/setting_fields.InvalidSetting`, the cause of the resource-initialisation failure); such a
    failure is never retried."""
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    lines = set()
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None)
        while error is not None:
            if error.cls_name == InvalidSetting.__name__:
                lines.add(error.message.strip().removeprefix(f"{InvalidSetting.__module__}.{InvalidSetting.__name__}: "))
            error = error.cause
    (line,) = lines
    return line
