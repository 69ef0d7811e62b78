"""The code location: `ty_pipeline.defs`."""

from __future__ import annotations

import dagster as dg

from ty_pipeline.assets.demand import demand_snapshots
from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.embeddings import posting_embeddings
from ty_pipeline.assets.postings import postings
from ty_pipeline.automation.jobs import build_jobs
from ty_pipeline.automation.schedules import build_nightly_schedule
from ty_pipeline.automation.sensors import build_new_fetch_sensor
from ty_pipeline.checks.ingestion import INGESTION_CHECKS
from ty_pipeline.resources.deutsche_bank import DEFAULT_DB_BASE_URL, DeutscheBankResource
from ty_pipeline.resources.embedder import (
    DEFAULT_EMBED_BACKEND,
    DEFAULT_EMBED_MODEL,
    DEFAULT_OLLAMA_HOST,
    EmbedderResource,
)
from ty_pipeline.resources.job_sources import DEFAULT_SOURCES, JobSourcesResource
from ty_pipeline.resources.jobsuche import DEFAULT_AA_BASE_URL, JobsucheResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.settings import env_or
from ty_pipeline.warehouse.engine import DEFAULT_WAREHOUSE_URL

DAILY_ASSETS = [postings, job_descriptions, posting_embeddings, demand_snapshots]


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(url=env_or("TY_WAREHOUSE_URL", DEFAULT_WAREHOUSE_URL)),
        "jobsuche": JobsucheResource(base_url=env_or("TY_AA_BASE_URL", DEFAULT_AA_BASE_URL)),
        "deutsche_bank": DeutscheBankResource(base_url=env_or("TY_DB_BASE_URL", DEFAULT_DB_BASE_URL)),
        "job_sources": JobSourcesResource(enabled=env_or("TY_SOURCES", DEFAULT_SOURCES)),
        "embedder": EmbedderResource(
            backend=env_or("TY_EMBED_BACKEND", DEFAULT_EMBED_BACKEND),
            model=env_or("TY_EMBED_MODEL", DEFAULT_EMBED_MODEL),
            ollama_host=env_or("OLLAMA_HOST", DEFAULT_OLLAMA_HOST),
        ),
    }


def build_defs(resources: dict[str, object] | None = None) -> dg.Definitions:
    """The code location; tests pass their own resources (fakes, temporary warehouses)."""
    daily_keys = [key for asset in DAILY_ASSETS for key in asset.keys]
    nightly_job, enrich_job = build_jobs(daily_keys)
    return dg.Definitions(
        assets=DAILY_ASSETS,
        asset_checks=INGESTION_CHECKS,
        jobs=[nightly_job, enrich_job],
        schedules=[build_nightly_schedule(nightly_job)],
        sensors=[build_new_fetch_sensor([k for k in daily_keys if k != dg.AssetKey("postings")])],
        resources=resources if resources is not None else build_resources(),
    )


defs = build_defs()
