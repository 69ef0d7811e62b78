"""Jobs over the daily-partitioned assets: the whole nightly pipeline, and enrichment after a fetch."""

from __future__ import annotations

import dagster as dg

NIGHTLY_JOB_NAME = "nightly_pipeline"
ENRICHMENT_JOB_NAME = "enrich_partition"


def build_jobs(daily_asset_keys: list[dg.AssetKey]) -> tuple[dg.UnresolvedAssetJobDefinition, ...]:
    """`nightly_pipeline` = every daily asset; `enrich_partition` = all of them except `postings`."""
    everything = dg.AssetSelection.assets(*daily_asset_keys)
    nightly = dg.define_asset_job(
        NIGHTLY_JOB_NAME,
        selection=everything,
        description="Fetch the day's postings and run every enrichment for that partition.",
        # A whole night must never run for 19 hours again: run monitoring ends runs after the instance's
        # `max_runtime_seconds` (dagster.yaml: 8 h; the Quickstart 1 h, so a killed run frees its `ollama`
        # slot soon). No run tag here: a tag would override the Quickstart's shorter limit.
    )
    enrich = dg.define_asset_job(
        ENRICHMENT_JOB_NAME,
        selection=everything - dg.AssetSelection.assets("postings"),
        description="Everything downstream of `postings` for one partition (requested by the new-fetch sensor).",
    )
    return nightly, enrich
