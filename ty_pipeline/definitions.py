"""The code location: `ty_pipeline.defs`."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.assets.berufenet_mappings import berufenet_mappings
from ty_pipeline.assets.berufenet_retry import berufenet_title_retry
from ty_pipeline.assets.demand import demand_snapshots
from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.embeddings import posting_embeddings
from ty_pipeline.assets.llm_enrichment import llm_enrichment
from ty_pipeline.assets.postings import postings
from ty_pipeline.assets.profession_similarity import profession_similarity
from ty_pipeline.automation.berufenet_sensor import berufenet_failed_titles_sensor
from ty_pipeline.automation.executor import step_executor
from ty_pipeline.automation.jobs import build_jobs
from ty_pipeline.automation.schedules import build_nightly_schedule
from ty_pipeline.automation.sensors import build_new_fetch_sensor
from ty_pipeline.checks.ingestion import INGESTION_CHECKS
from ty_pipeline.checks.llm_outputs import build_llm_output_checks
from ty_pipeline.clients.deutsche_bank import DEFAULT_DB_BASE_URL
from ty_pipeline.clients.embedder import DEFAULT_EMBED_BACKEND, DEFAULT_EMBED_MODEL
from ty_pipeline.clients.jobsuche import DEFAULT_AA_BASE_URL
from ty_pipeline.clients.ollama import DEFAULT_OLLAMA_HOST
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.job_sources import JobSourcesResource
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.settings_check import SettingsInvalid, check_environment
from ty_pipeline.warehouse.engine import DEFAULT_WAREHOUSE_URL

# The partitioned pipeline, in the order a night runs it (the nightly job selects all of them).
DAILY_ASSETS = [
    postings,
    job_descriptions,
    llm_enrichment,  # posting_summaries, skill_keywords, ihl_scores in one step
    berufenet_mappings,
    posting_embeddings,
    demand_snapshots,
]
# Unpartitioned or title-partitioned: built on demand (catalog, similarity) or backfilled (failed titles).
OTHER_ASSETS = [berufenet_catalog, profession_similarity, berufenet_title_retry]


def env_or(name: str, default: Any) -> Any:
    """`dg.EnvVar(name)` when the variable is set, else `default`: Dagster resolves the variable at launch and
    the UI shows its name, never its value. (The resources also resolve an empty field from the environment
    when used, `Setting.resolve`, since run config that sets another field drops these values.)"""
    return dg.EnvVar(name) if os.environ.get(name) else default


def build_resources() -> dict[str, dg.ConfigurableResource]:
    # A wrong setting stops the code location from loading, with one line per variable, instead of
    # failing runs later with a library traceback that does not name it.
    problems = check_environment()
    if problems:
        raise SettingsInvalid(problems)
    return {
        "warehouse": WarehouseResource(url=env_or("TY_WAREHOUSE_URL", DEFAULT_WAREHOUSE_URL)),
        "jobsuche": JobsucheResource(base_url=env_or("TY_AA_BASE_URL", DEFAULT_AA_BASE_URL)),
        "deutsche_bank": DeutscheBankResource(base_url=env_or("TY_DB_BASE_URL", DEFAULT_DB_BASE_URL)),
        "job_sources": JobSourcesResource(enabled=env_or("TY_SOURCES", "")),
        "embedder": EmbedderResource(
            backend=env_or("TY_EMBED_BACKEND", DEFAULT_EMBED_BACKEND),
            model=env_or("TY_EMBED_MODEL", DEFAULT_EMBED_MODEL),
            onnx_cache_dir=env_or("TY_EMBED_CACHE_DIR", ""),
        ),
        # Endpoints given here are also resolved from the environment at use (Setting.resolve): run
        # config that sets only a tuning knob replaces this configuration but never the endpoint.
        "ollama": OllamaResource(host=env_or("OLLAMA_HOST", DEFAULT_OLLAMA_HOST)),
        "llm_scope": LlmScopeResource(),  # every field resolved from the environment when used
        "profession_catalog": ProfessionCatalogResource(
            kldb_csv=env_or("TY_KLDB_CSV", None), berufenet_api_url=env_or("TY_BERUFENET_API_URL", None)
        ),
    }


def build_defs(resources: dict[str, object] | None = None) -> dg.Definitions:
    """The code location; tests pass their own resources (fakes, temporary warehouses)."""
    daily_keys = [key for asset in DAILY_ASSETS for key in asset.keys]
    nightly_job, enrich_job = build_jobs(daily_keys)
    return dg.Definitions(
        assets=[*DAILY_ASSETS, *OTHER_ASSETS],
        asset_checks=[*INGESTION_CHECKS, *build_llm_output_checks()],
        jobs=[nightly_job, enrich_job],
        schedules=[build_nightly_schedule(nightly_job)],
        sensors=[
            build_new_fetch_sensor([k for k in daily_keys if k != dg.AssetKey("postings")]),
            berufenet_failed_titles_sensor,
        ],
        resources=resources if resources is not None else build_resources(),
        executor=step_executor,
    )


defs = build_defs()
