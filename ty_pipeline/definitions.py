"""The code location: `ty_pipeline.defs`."""

from __future__ import annotations

import dagster as dg

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.resources.deutsche_bank import DEFAULT_DB_BASE_URL, DeutscheBankResource
from ty_pipeline.resources.job_sources import DEFAULT_SOURCES, JobSourcesResource
from ty_pipeline.resources.jobsuche import DEFAULT_AA_BASE_URL, JobsucheResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.settings import env_or
from ty_pipeline.warehouse.engine import DEFAULT_WAREHOUSE_URL


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(url=env_or("TY_WAREHOUSE_URL", DEFAULT_WAREHOUSE_URL)),
        "jobsuche": JobsucheResource(base_url=env_or("TY_AA_BASE_URL", DEFAULT_AA_BASE_URL)),
        "deutsche_bank": DeutscheBankResource(base_url=env_or("TY_DB_BASE_URL", DEFAULT_DB_BASE_URL)),
        "job_sources": JobSourcesResource(enabled=env_or("TY_SOURCES", DEFAULT_SOURCES)),
    }


defs = dg.Definitions(
    assets=[postings, job_descriptions],
    resources=build_resources(),
)
