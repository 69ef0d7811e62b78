"""The new-fetch sensor: a `postings` partition that brought new postings gets its enrichments.

Cheap by construction (docs/dagster_pitfalls.md §C3): it only reads materialization events after its cursor and
emits run requests; no fetching or LLM work happens inside the sensor.
"""

from __future__ import annotations

import dagster as dg

from ty_pipeline.automation.jobs import ENRICHMENT_JOB_NAME, NIGHTLY_JOB_NAME

POSTINGS_KEY = dg.AssetKey("postings")
MAX_EVENTS_PER_TICK = 200


def _new_count(record: dg.EventLogRecord) -> int:
    materialization = record.asset_materialization
    if materialization is None:
        return 0
    value = materialization.metadata.get("new")
    return int(value.value) if value is not None and isinstance(value.value, int | float) else 0


def _run_covered_enrichment(instance: dg.DagsterInstance, run_id: str, enrichment_keys: set[dg.AssetKey]) -> bool:
    """True when the run that fetched also materialized the enrichments (e.g. the nightly schedule)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return False
    if not run.asset_selection:  # empty or None: the whole job ran, not a subset of it
        return run.job_name == NIGHTLY_JOB_NAME
    return enrichment_keys <= set(run.asset_selection)


def build_new_fetch_sensor(enrichment_keys: list[dg.AssetKey]) -> dg.SensorDefinition:
    keys = set(enrichment_keys)

    @dg.sensor(
        name="new_postings_sensor",
        job_name=ENRICHMENT_JOB_NAME,
        minimum_interval_seconds=60,
        description=(
            "When `postings` materializes a partition with new postings (late arrivals for older days "
            "included), request the enrichment assets for exactly that partition."
        ),
    )
    def new_postings_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        after = int(context.cursor) if context.cursor else None
        result = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=POSTINGS_KEY, after_storage_id=after),
            limit=MAX_EVENTS_PER_TICK,
            ascending=True,
        )
        if not result.records:
            return dg.SkipReason("no new `postings` materializations since the last tick")
        requests: list[dg.RunRequest] = []
        skipped: list[str] = []
        for record in result.records:
            partition = record.partition_key
            new = _new_count(record)
            if partition is None:
                continue
            if new == 0:
                skipped.append(f"{partition}: no new postings")
            elif _run_covered_enrichment(context.instance, record.run_id, keys):
                skipped.append(f"{partition}: the fetching run already enriched it")
            else:
                requests.append(
                    dg.RunRequest(
                        run_key=f"enrich-{partition}-{record.storage_id}",
                        partition_key=partition,
                        tags={"ty/trigger": "new_postings", "ty/new_postings": str(new)},
                    )
                )
        cursor = str(result.records[-1].storage_id)
        if not requests:
            context.update_cursor(cursor)
            return dg.SkipReason("; ".join(skipped[:10]) or "nothing to enrich")
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return new_postings_sensor
