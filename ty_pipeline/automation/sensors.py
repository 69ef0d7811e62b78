"""The new-fetch sensor: a `postings` partition that brought new postings gets its enrichments.

Cheap by construction (docs/dagster_pitfalls.md §C3): it only reads materialization events after its cursor and
emits run requests; no fetching or LLM work happens inside the sensor.
"""

from __future__ import annotations

import dagster as dg

from ty_pipeline.automation.jobs import ENRICHMENT_JOB_NAME, NIGHTLY_JOB_NAME

POSTINGS_KEY = dg.AssetKey("postings")
MAX_EVENTS_PER_TICK = 200
MAX_REASONS = 10  # per skip message: the tick history shows it in one cell


def _new_count(record: dg.EventLogRecord) -> int:
    materialization = record.asset_materialization
    if materialization is None:
        return 0
    value = materialization.metadata.get("new")
    return int(value.value) if value is not None and isinstance(value.value, int | float) else 0


def _covering_run(instance: dg.DagsterInstance, run_id: str, enrichment_keys: set[dg.AssetKey]) -> str | None:
    """How the operator knows the run that fetched, when it also materialized the enrichments, else None."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None
    if not run.asset_selection:  # empty or None: the whole job ran, not a subset of it
        return "the nightly run" if run.job_name == NIGHTLY_JOB_NAME else None
    if not enrichment_keys <= set(run.asset_selection):
        return None
    return "the nightly run" if run.job_name == NIGHTLY_JOB_NAME else f"run {run_id[:8]} of `{run.job_name}`"


def skip_message(reasons: list[str]) -> str:
    """One line for the tick history: the first reasons, and how many more there were."""
    shown = "; ".join(reasons[:MAX_REASONS])
    more = len(reasons) - MAX_REASONS
    return f"{shown}; and {more} more" if more > 0 else shown


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
            return dg.SkipReason("no new postings since the last tick (no `postings` materialization)")
        requests: list[dg.RunRequest] = []
        skipped: list[str] = []
        for record in result.records:
            partition = record.partition_key
            new = _new_count(record)
            if partition is None:
                skipped.append("a `postings` materialization without a partition (nothing to enrich)")
                continue
            covered_by = _covering_run(context.instance, record.run_id, keys) if new else None
            if new == 0:
                skipped.append(f"{partition} fetched no new postings")
            elif covered_by is not None:
                skipped.append(f"{partition} already enriched by {covered_by}")
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
            return dg.SkipReason(skip_message(skipped))
        if skipped:  # a tick with runs cannot carry a skip reason; the tick's log keeps the rest
            context.log.info(f"not requested: {skip_message(skipped)}")
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return new_postings_sensor
