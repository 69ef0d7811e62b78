"""The `postings` asset: one day's postings from Jobsuche and Deutsche Bank, upserted into the warehouse."""


from typing import Any

import dagster as dg

from ty_pipeline.assets.check_report import explained
from ty_pipeline.domain.clock import berlin_today, utcnow
from ty_pipeline.domain.pool_names import JOB_APIS_POOL
from ty_pipeline.fetching.postings_run import PostingsRun, ingest_postings
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.job_sources import JobSourcesResource, parse_sources, source_access
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset


class PostingsConfig(dg.Config):
    sources: list[str] | None = None  # overrides TY_SOURCES for this run, e.g. ["deutsche_bank"]


FETCH_COMPLETE_CHECK = "fetch_complete"
ALL_STORED_CHECK = "all_postings_stored"


@retried_asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    kinds={"python", "sql"},
    # One job-API step per instance at a time: the per-step request pace is then the rate the APIs see,
    # also while a backfill's runs and the nightly run fetch at once (see domain/pool_names.py).
    pool=JOB_APIS_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            FETCH_COMPLETE_CHECK,
            asset="postings",
            partitions_def=daily_partitions,
            description="Every configured source answered every query of this partition.",
        ),
        # Blocking: a posting the warehouse refused fails the step (after every other row is saved)
        # and keeps downstream assets of the run from treating the day as complete.
        dg.AssetCheckSpec(
            ALL_STORED_CHECK,
            asset="postings",
            partitions_def=daily_partitions,
            blocking=True,
            description="Every fetched posting of the partition reached the warehouse; lost ones are named.",
        ),
    ],
    description=(
        "Postings published on the partition day (Europe/Berlin) from the Jobsuche API (16 per-state "
        "queries) and the Deutsche Bank careers API, upserted by (source, external_id). A Deutsche Bank posting "
        "without a readable publication date is stored once, by today's partition, with no date. Known postings "
        "seen again are marked alive, except those the source declared gone (they wait for a detail "
        "re-check); stale ones are invalidated with a reason, only after a complete fetch of their source."
    ),
)
def postings(
    context: dg.AssetExecutionContext,
    config: PostingsConfig,
    warehouse: WarehouseResource,
    jobsuche: JobsucheResource,
    deutsche_bank: DeutscheBankResource,
    job_sources: JobSourcesResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    sources = parse_sources(config.sources) if config.sources else job_sources.sources()
    run = ingest_postings(
        warehouse.get_engine(), day, sources, source_access(jobsuche, deutsche_bank, job_sources),
        today=berlin_today(), now=utcnow(), log=context.log.info, warn=context.log.warning,
    )
    for message in run.errors:
        context.log.error(message)
    metadata = postings_metadata(run)
    if run.all_sources_failed:
        raise dg.Failure(
            description=f"All posting sources failed for {day}: " + "; ".join(run.errors[:5]),
            metadata=metadata,
            allow_retries=False,
        )
    stats = run.stats
    context.log.info(
        f"{day}: {stats.new} new, {stats.changed} updated, {stats.unchanged} unchanged, "
        f"{run.resurrected} resurrected, {len(run.errors)} errors"
    )
    if stats.lost:
        context.log.error(
            f"{len(stats.lost)} posting(s) of {day} could not be stored; every other row was saved: "
            + "; ".join(stats.lost[:5])
        )
    # A failed blocking check fails the step after the materialization is recorded (non-zero exit).
    return dg.MaterializeResult(metadata=metadata, check_results=[fetch_check(run), stored_check(run)])


def postings_metadata(run: PostingsRun) -> dict[str, Any]:
    stats = run.stats
    fetch_errors, errors = run.fetch_errors, run.errors
    metadata: dict[str, dg.RawMetadataValue] = {
        "sources": ", ".join(run.sources),
        "new": stats.new,
        "updated": stats.changed,
        "unchanged": stats.unchanged,
        "resurrected": run.resurrected,
        "listed_but_held_gone": stats.held_gone,
        "revived_not_found_reinvalidated": run.held_again,
        "seen_in_other_partitions": run.touched,
        # Listed without a readable publication date (docs/domain_rules.md §1.4): stored now under the
        # day first seen, already stored (a sighting), or new but left to today's run by a backfill.
        "undated_stored": len(run.undated.store),
        "undated_seen": len(run.undated.seen),
        "undated_deferred": len(run.undated.deferred),
        "duplicates_dropped": sum(f.duplicates for f in run.fetches),
        "malformed_items": sum(f.malformed for f in run.fetches),
        "errors": len(fetch_errors) + stats.errors,
        "rows_lost": len(stats.lost),
        "stale_invalidated_arbeitsagentur": run.sweep_arbeitsagentur.invalidated,
        "jobsuche_sweep": run.sweep_arbeitsagentur.note,
        "stale_invalidated_deutsche_bank": run.sweep_deutsche_bank.invalidated,
        "deutsche_bank_sweep": run.sweep_deutsche_bank.note,
        "kept_per_source_and_state": dg.MetadataValue.json(run.kept_per_state()),
        # Storing cost per 1,000 postings (wall and this process's CPU), so a slower store shows up
        # next to the volume that explains it (issue #13: <= 5 s CPU for a 16,000-posting day).
        "store_seconds": round(run.store_seconds, 3),
        "store_ms_per_1000": _per_1000(run.store_seconds, run.records),
        "store_cpu_ms_per_1000": _per_1000(run.store_cpu_seconds, run.records),
        "dagster/row_count": run.partition_rows,
    }
    for f, stored in zip(run.fetches, run.stored, strict=True):
        metadata[f"fetched_{f.source}"] = f.fetched
        metadata[f"kept_{f.source}"] = f.kept
        metadata[f"stored_{f.source}"] = stored
        metadata[f"reported_total_{f.source}"] = f.reported_total
        if f.window_truncated:
            metadata[f"window_truncated_{f.source}"] = f.window_truncated
        if f.per_state:
            metadata[f"per_state_{f.source}"] = dg.MetadataValue.json(f.per_state)
    for source, figures in run.pacing.items():
        metadata[f"requests_{source}"] = dg.MetadataValue.json(figures)
    if errors:
        metadata["error_messages"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in errors[:20]))
    if stats.lost:
        metadata["lost_postings"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in stats.lost[:50]))
    return metadata


def fetch_check(run: PostingsRun) -> dg.AssetCheckResult:
    fetch_errors = run.fetch_errors
    return explained(
        check_name=FETCH_COMPLETE_CHECK,
        passed=not fetch_errors,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "errors": len(fetch_errors),
            "first_errors": dg.MetadataValue.md("\n".join(fetch_errors[:5]) or "none"),
        },
        reason=f"{len(fetch_errors)} fetch requests for {run.day} failed (expected 0), in "
        f"{', '.join(f.source for f in run.fetches if f.errors)}: the partition may miss postings; materialize it "
        "again once the source answers",
        examples=[{"source": f.source, "error": e} for f in run.fetches for e in f.errors],
        total_examples=len(fetch_errors),
    )


def stored_check(run: PostingsRun) -> dg.AssetCheckResult:
    lost = run.stats.lost
    return explained(
        check_name=ALL_STORED_CHECK,
        passed=not lost,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_lost": len(lost),
            "lost_postings": dg.MetadataValue.md("\n".join(f"- {e}" for e in lost[:50]) or "none"),
            "fetched_for_partition": run.records,
            "stored": sum(run.stored),
        },
        reason=f"{len(lost)} of {run.records} postings fetched for {run.day} could not be stored (expected 0); "
        "every other row was saved",
        examples=run.stats.lost_rows,
        total_examples=len(lost),
    )


def _per_1000(seconds: float, rows: int) -> float | None:
    """Milliseconds per 1,000 rows; None for an empty day (a per-row figure of nothing means nothing)."""
    return round(seconds * 1000 * 1000 / rows, 1) if rows else None
