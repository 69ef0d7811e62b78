"""The `postings` asset: one day's postings from Jobsuche and Deutsche Bank, upserted into the warehouse."""


import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from sqlalchemy import func, select

from ty_pipeline.assets.check_report import explained
from ty_pipeline.domain.clock import berlin_today, utcnow
from ty_pipeline.domain.invalidation import StaleRules
from ty_pipeline.domain.posting_record import Source
from ty_pipeline.fetching.deutsche_bank import fetch_deutsche_bank
from ty_pipeline.fetching.jobsuche import fetch_jobsuche
from ty_pipeline.fetching.result import SourceFetch
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.job_sources import JobSourcesResource, parse_sources
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.postings_store import (
    SweepResult,
    count_stored,
    hold_revived_not_found,
    sweep_stale_arbeitsagentur,
    sweep_stale_deutsche_bank,
    touch_seen,
    upsert_postings,
)
from ty_pipeline.warehouse.schema import postings as postings_table


class PostingsConfig(dg.Config):
    sources: list[str] | None = None  # overrides TY_SOURCES for this run, e.g. ["deutsche_bank"]


FETCH_COMPLETE_CHECK = "fetch_complete"
ALL_STORED_CHECK = "all_postings_stored"


@retried_asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    kinds={"python", "sql"},
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
        "queries) and the Deutsche Bank careers API, upserted by (source, external_id). Known postings "
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
    today = berlin_today()
    sources = parse_sources(config.sources) if config.sources else job_sources.sources()
    context.log.info(f"Fetching postings published on {day} from {', '.join(sources)}")
    fetches: list[SourceFetch] = []
    pacing: dict[str, dict[str, float | int | str | None]] = {}  # per source: requests, configured/achieved rate
    for source in sources:
        if source == "arbeitsagentur":
            client = jobsuche.get_client()
            try:
                fetches.append(
                    fetch_jobsuche(client, day, today=today, page_size=jobsuche.page_size, log=context.log.info)
                )
            finally:
                if client.limiter is not None:
                    pacing[source] = client.limiter.summary()
                client.close()
        elif source == "deutsche_bank":
            client_db = deutsche_bank.get_client()
            try:
                fetches.append(
                    fetch_deutsche_bank(
                        client_db, day, page_size=deutsche_bank.page_size,
                        country_ids=deutsche_bank.country_ids, max_items=deutsche_bank.max_items,
                        log=context.log.info,
                    )
                )
            finally:
                if client_db.limiter is not None:
                    pacing[source] = client_db.limiter.summary()
                client_db.close()
        elif source == "sample":
            for fetch in SampleSource(Path(job_sources.sample_dir), today).fetch(day):
                fetch.source = f"sample:{fetch.source}"
                fetches.append(fetch)

    engine = warehouse.get_engine()
    now = utcnow()
    records = [r for f in fetches for r in f.records]
    started, started_cpu = time.perf_counter(), time.process_time()
    stats = upsert_postings(engine, records, partition_date=day, now=now)
    store_s, store_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    touched, touch_resurrected = touch_seen(engine, [k for f in fetches for k in f.seen_elsewhere], now=now)

    held_again = hold_revived_not_found(engine, now=now)

    rules = StaleRules()
    sweep_aa_count, sweep_aa_note = _sweep_after_complete_fetch(
        context, fetches, Source.ARBEITSAGENTUR, "Jobsuche", "fetch",
        lambda: sweep_stale_arbeitsagentur(engine, now=now, rules=rules),
    )
    sweep_db_count, sweep_db_note = _sweep_after_complete_fetch(
        context, fetches, Source.DEUTSCHE_BANK, "Deutsche Bank", "listing",
        lambda: sweep_stale_deutsche_bank(engine, now=now, rules=rules),
    )

    with engine.connect() as conn:
        partition_rows = conn.execute(
            select(func.count()).select_from(postings_table).where(postings_table.c.partition_date == day)
        ).scalar_one()

    # Rows that reached the warehouse in this run, per fetch: what the totals check compares.
    stored = {id(f): sum(count_stored(engine, f.records).values()) for f in fetches}
    fetch_errors = [e for f in fetches for e in f.errors]
    errors = fetch_errors + (stats.error_messages or [])
    for message in errors:
        context.log.error(message)
    per_state: dict[str, dict[str, int]] = {}
    for f in fetches:
        kept_by_state = Counter(r.state or "unknown" for r in f.records)
        per_state[f.source] = dict(sorted(kept_by_state.items()))
    metadata: dict[str, dg.RawMetadataValue] = {
        "sources": ", ".join(sources),
        "new": stats.new,
        "updated": stats.changed,
        "unchanged": stats.unchanged,
        "resurrected": stats.resurrected + touch_resurrected,
        "listed_but_held_gone": stats.held_gone,
        "revived_not_found_reinvalidated": held_again,
        "seen_in_other_partitions": touched,
        "duplicates_dropped": sum(f.duplicates for f in fetches),
        "malformed_items": sum(f.malformed for f in fetches),
        "errors": len(fetch_errors) + stats.errors,
        "rows_lost": len(stats.lost),
        "stale_invalidated_arbeitsagentur": sweep_aa_count,
        "jobsuche_sweep": sweep_aa_note,
        "stale_invalidated_deutsche_bank": sweep_db_count,
        "deutsche_bank_sweep": sweep_db_note,
        "kept_per_source_and_state": dg.MetadataValue.json(per_state),
        # Storing cost per 1,000 postings (wall and this process's CPU), so a slower store shows up
        # next to the volume that explains it (issue #13: <= 5 s CPU for a 16,000-posting day).
        "store_seconds": round(store_s, 3),
        "store_ms_per_1000": _per_1000(store_s, len(records)),
        "store_cpu_ms_per_1000": _per_1000(store_cpu_s, len(records)),
        "dagster/row_count": partition_rows,
    }
    for f in fetches:
        metadata[f"fetched_{f.source}"] = f.fetched
        metadata[f"kept_{f.source}"] = f.kept
        metadata[f"stored_{f.source}"] = stored[id(f)]
        metadata[f"reported_total_{f.source}"] = f.reported_total
        if f.window_truncated:
            metadata[f"window_truncated_{f.source}"] = f.window_truncated
        if f.per_state:
            metadata[f"per_state_{f.source}"] = dg.MetadataValue.json(f.per_state)
    for source, figures in pacing.items():
        metadata[f"requests_{source}"] = dg.MetadataValue.json(figures)
    if errors:
        metadata["error_messages"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in errors[:20]))
    if stats.lost:
        metadata["lost_postings"] = dg.MetadataValue.md("\n".join(f"- {e}" for e in stats.lost[:50]))

    if errors and not records and all(f.errors for f in fetches):
        # Nothing arrived at all: that is a failed partition, not an empty day.
        raise dg.Failure(
            description=f"All posting sources failed for {day}: " + "; ".join(errors[:5]),
            metadata=metadata,
            allow_retries=False,
        )
    context.log.info(
        f"{day}: {stats.new} new, {stats.changed} updated, {stats.unchanged} unchanged, "
        f"{stats.resurrected + touch_resurrected} resurrected, {len(errors)} errors"
    )
    check = explained(
        check_name=FETCH_COMPLETE_CHECK,
        passed=not fetch_errors,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "errors": len(fetch_errors),
            "first_errors": dg.MetadataValue.md("\n".join(fetch_errors[:5]) or "none"),
        },
        reason=f"{len(fetch_errors)} fetch requests for {day} failed (expected 0), in "
        f"{', '.join(f.source for f in fetches if f.errors)}: the partition may miss postings; materialize it "
        "again once the source answers",
        examples=[{"source": f.source, "error": e} for f in fetches for e in f.errors],
        total_examples=len(fetch_errors),
    )
    if stats.lost:
        context.log.error(
            f"{len(stats.lost)} posting(s) of {day} could not be stored; every other row was saved: "
            + "; ".join(stats.lost[:5])
        )
    stored_check = explained(
        check_name=ALL_STORED_CHECK,
        passed=not stats.lost,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_lost": len(stats.lost),
            "lost_postings": dg.MetadataValue.md("\n".join(f"- {e}" for e in stats.lost[:50]) or "none"),
            "fetched_for_partition": len(records),
            "stored": sum(stored.values()),
        },
        reason=f"{len(stats.lost)} of {len(records)} postings fetched for {day} could not be stored (expected 0); "
        "every other row was saved",
        examples=stats.lost_rows,
        total_examples=len(stats.lost),
    )
    # A failed blocking check fails the step after the materialization is recorded (non-zero exit).
    return dg.MaterializeResult(metadata=metadata, check_results=[check, stored_check])


def _per_1000(seconds: float, rows: int) -> float | None:
    """Milliseconds per 1,000 rows; None for an empty day (a per-row figure of nothing means nothing)."""
    return round(seconds * 1000 * 1000 / rows, 1) if rows else None


def _sweep_after_complete_fetch(
    context: dg.AssetExecutionContext,
    fetches: list[SourceFetch],
    source: Source,
    label: str,
    fetch_kind: str,
    sweep: Callable[[], SweepResult],
) -> tuple[int, str]:
    """Run a source's stale sweep only after its complete fetch in this run: (invalidated, note).

    Only a complete fetch makes "unseen" mean "gone"; after a failed one it means "not fetched".
    """
    fetch = next((f for f in fetches if f.source == str(source)), None)
    if fetch is None:
        return 0, f"{label} not fetched in this run"
    if not fetch.complete:
        return 0, f"skipped: the {label} {fetch_kind} was incomplete"
    result = sweep()
    if result.skipped_reason:
        context.log.warning(result.skipped_reason)
    return result.invalidated, result.skipped_reason or "ran"
