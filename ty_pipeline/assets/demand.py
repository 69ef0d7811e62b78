"""The `demand_snapshots` asset: demand per state x KldB domain and per state x profession on a date."""


import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import dagster as dg

from ty_pipeline.assets.check_report import explained
from ty_pipeline.domain.check_report import examples_table
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.demand import (
    MIN_POSTINGS_PER_PROFESSION,
    STRONGEST_MAX_ROWS,
    SnapshotRow,
    consistency_problems,
    strongest_demand,
    strongest_demand_rows,
)
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.demand_store import (
    active_summary,
    distinct_stored_states,
    store_snapshot,
)

SNAPSHOT_CHECK = "snapshot_sums_consistent"
# Postings are counted by the profession their title maps to.
UPSTREAM = ["postings", "berufenet_mappings"]


class DemandConfig(dg.Config):
    min_postings_per_profession: int = MIN_POSTINGS_PER_PROFESSION  # nationwide, for a profession row


@retried_asset(
    partitions_def=daily_partitions,
    group_name="market",
    kinds={"python", "sql"},
    deps=UPSTREAM,
    check_specs=[
        dg.AssetCheckSpec(
            SNAPSHOT_CHECK,
            asset="demand_snapshots",
            partitions_def=daily_partitions,
            description=(
                "Per state and domain, profession rows sum to at most the domain row; per state, domain rows "
                "sum to the mapped active postings counted independently in SQL."
            ),
        )
    ],
    description=(
        "Active postings on the partition date (published by then, not invalidated by then) with a KldB "
        "mapping and a state, counted per state x 2-digit KldB domain and per state x profession (professions "
        "with enough postings nationwide), with 7/14-day freshness by publication date and the ratio to the "
        "mean over all 16 Länder. Re-materializing a date replaces that date's rows only."
    ),
)
def demand_snapshots(
    context: dg.AssetExecutionContext, config: DemandConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    day = partition_date(context)
    engine = warehouse.get_engine()
    started = time.monotonic()
    # The count the check compares with is taken apart from the snapshot statement, and at the same time:
    # on PostgreSQL each runs on its own core (an INSERT ... SELECT never gets parallel workers). One call
    # beside this thread, not a fan-out over items, so a plain future rather than domain/concurrency.py:
    # the statement stays on this thread and its own duration is measured (`seconds_statement`).
    spellings = distinct_stored_states(engine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="demand-count") as pool:
        counting = pool.submit(active_summary, engine, day)
        # The stored rows come back from the INSERT itself (RETURNING): no second read for the check.
        stored = store_snapshot(
            engine, day, utcnow(), min_postings_per_profession=config.min_postings_per_profession,
            stored_states=spellings,
        )
        written_at = time.monotonic()
        summary = counting.result()
    counted_at = time.monotonic()
    written = len(stored)
    problems = consistency_problems(stored, summary.mapped_by_state)
    for problem in problems[:20]:
        context.log.error(problem)

    domain_rows = [r for r in stored if r.berufenet_id is None]
    profession_rows = [r for r in stored if r.berufenet_id is not None]
    strongest = strongest_demand_table(stored)
    metadata: dict[str, dg.RawMetadataValue] = {
        "rows_written": written,
        "domain_rows": len(domain_rows),
        "profession_rows": len(profession_rows),
        "states": len({r.state for r in stored}),
        "domains": len({r.domain_code for r in domain_rows}),
        "professions": len({r.berufenet_id for r in profession_rows}),
        "active_postings": summary.active,
        "mapped_active_postings": summary.counted,
        "excluded_without_state": summary.without_state,
        "excluded_bad_kldb": summary.bad_kldb,
        "min_postings_per_profession": config.min_postings_per_profession,
        "seconds": round(time.monotonic() - started, 2),
        # Where the time goes: the snapshot statements (the count runs beside them; `seconds_count_wait` is
        # how long it outlasted them), then the check and the metadata.
        "seconds_statement": round(written_at - started, 3),
        "seconds_count_wait": round(counted_at - written_at, 3),
        "seconds_check": round(time.monotonic() - counted_at, 3),
        "dagster/row_count": written,
        # Totals as plain numbers, which the UI plots over partitions.
        "total_postings": sum(r.total_postings for r in domain_rows),
        "fresh_7d_postings": sum(r.fresh_7d for r in domain_rows),
        "fresh_14d_postings": sum(r.fresh_14d for r in domain_rows),
        "strongest_demand": dg.MetadataValue.md(strongest),
    }
    context.log.info(
        f"{day}: {len(domain_rows)} domain rows, {len(profession_rows)} profession rows from "
        f"{summary.counted} mapped of {summary.active} active postings"
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[snapshot_check(day, problems)])


def strongest_demand_table(rows: list[SnapshotRow]) -> str:
    """The day's result at a glance: per state the professions with the highest demand ratio."""
    top = strongest_demand(rows)
    if not top:
        return "no profession rows on this date (too few mapped postings per profession)"
    return (
        "Per state the 3 professions with the highest `demand_ratio` (postings in the state / mean over the "
        "16 Länder).\n\n" + examples_table(strongest_demand_rows(top), limit=STRONGEST_MAX_ROWS)
    )


def snapshot_check(day: date, problems: list[str]) -> dg.AssetCheckResult:
    """The consistency check's result: each problem "state/domain[/profession]: what does not add up"."""
    rows = []
    for problem in problems:
        where, _, what = problem.partition(": ")
        rows.append({"state/domain/profession": where, "problem": what})
    return explained(
        check_name=SNAPSHOT_CHECK,
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "problems": len(problems),
            "first_problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:10]) or "none"),
        },
        reason=f"{len(problems)} sums of the {day} snapshot do not add up (expected 0): professions above their "
        "domain, domains that differ from the mapped active postings, or fresh counts above the total",
        examples=rows,
    )
