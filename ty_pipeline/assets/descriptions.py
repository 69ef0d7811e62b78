"""The `job_descriptions` asset: full description text for the partition's postings."""


from typing import Any

import dagster as dg

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.clock import berlin_today, utcnow
from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.pool_names import JOB_APIS_POOL
from ty_pipeline.fetching.descriptions_run import DescriptionsRun, fetch_descriptions
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.job_sources import JobSourcesResource, source_access
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset


class DescriptionsConfig(dg.Config):
    max_postings: int | None = None  # cap for one run (newest first); the rest stays pending


DESCRIPTIONS_CHECK = "no_failed_fetches"


def _finished_runs(instance: dg.DagsterInstance, run_ids: set[str]) -> set[str]:
    """Lease holders the instance knows to be over (crashed, failed, cancelled): their leases are free.

    A run the instance does not know (another instance sharing the warehouse) is trusted until its
    lease expires.
    """
    finished = set()
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            finished.add(run_id)
    return finished


@retried_asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    kinds={"python", "sql"},
    deps=["postings"],
    # The same pool as `postings`: the detail calls go to the same APIs (see domain/pool_names.py).
    pool=JOB_APIS_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            DESCRIPTIONS_CHECK,
            asset="job_descriptions",
            partitions_def=daily_partitions,
            description=(
                "No description fetch of this run failed (failures are retried once on the next run) and "
                "no fetched text was refused by the warehouse (`unstorable`, named in the metadata)."
            ),
        )
    ],
    description=(
        "Full description text per posting: Jobsuche `/pc/v4/jobdetails/{base64(refnr)}` (JSON, no HTML "
        "scraping) and Deutsche Bank `jobhtml`, HTML cleaned to text. Partner-hosted postings get status "
        "`external_partner`; postings the source no longer has are invalidated; two failures and a posting "
        "is not retried again (`gave_up`). Postings another live run is fetching are skipped (a lease per "
        "posting); postings declared gone but listed again are re-checked after a few days, at most twice, "
        "and revived only when the detail call succeeds. A text the warehouse refuses becomes the final "
        "status `unstorable` with the reason, and the other postings are still saved."
    ),
)
def job_descriptions(
    context: dg.AssetExecutionContext,
    config: DescriptionsConfig,
    warehouse: WarehouseResource,
    jobsuche: JobsucheResource,
    deutsche_bank: DeutscheBankResource,
    job_sources: JobSourcesResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    engine = warehouse.get_engine()
    run = fetch_descriptions(
        engine, day, source_access(jobsuche, deutsche_bank, job_sources),
        run_id=context.run.run_id, finished_runs=lambda holders: _finished_runs(context.instance, holders),
        max_postings=config.max_postings, today=berlin_today(), now=utcnow,
        log=context.log.info, error=context.log.error,
    )
    for message in run.failures[:20]:
        context.log.warning(f"description fetch failed: {message}")
    metadata = descriptions_metadata(run)
    if run.unsaved:
        raise dg.Failure(
            description=f"{len(run.unsaved)} description outcome(s) of {day} could not be saved at all "
            f"(every other one was): {'; '.join(run.unsaved[:5])}",
            metadata=metadata,
        )
    if run.every_fetch_failed:
        raise dg.Failure(
            description=f"Every description fetch for {day} failed; first: {run.failures[0]}",
            metadata=metadata,
            allow_retries=False,
        )
    passed = not run.failures and not run.unstorable
    check = explained(
        check_name=DESCRIPTIONS_CHECK,
        passed=passed,
        reason=f"{len(run.failures)} description fetches for {day} failed and {len(run.unstorable)} fetched texts "
        "could not be stored (expected 0); a `failed` fetch is retried by the partition's next run, `gave_up` and "
        "`unstorable` are final",
        examples=[] if passed else posting_examples(engine, run.offenders),
        total_examples=len(run.offenders),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": len(run.failures),
            "examples": dg.MetadataValue.md("\n".join(run.failures[:5]) or "none"),
            "unstorable": len(run.unstorable),
            "unstorable_postings": ", ".join(run.unstorable[:50]) or "none",
        },
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def descriptions_metadata(run: DescriptionsRun) -> dict[str, Any]:
    """The run's figures, and the whole partition's coverage when the run did not fail."""
    counts = run.counts
    metadata: dict[str, dg.RawMetadataValue] = {
        "processed": run.processed,
        "ok": counts[DescriptionStatus.OK],
        "too_short": counts[DescriptionStatus.TOO_SHORT],
        "external_partner": counts[DescriptionStatus.EXTERNAL_PARTNER],
        "not_found_invalidated": counts[DescriptionStatus.NOT_FOUND],
        "failed_will_retry": counts[DescriptionStatus.FAILED],
        "gave_up": counts[DescriptionStatus.GAVE_UP],
        "unstorable": len(run.unstorable),
        "unstorable_postings": ", ".join(run.unstorable[:50]) or "none",
        "pending_left_out": run.left_out,
        "skipped_leased_by_other_run": run.leased_elsewhere,
        "rechecked_held_postings": run.rechecks,
        "revived_after_recheck": run.recheck_counts["revived"],
        "seconds": round(run.seconds, 2),
        "by_source_and_status": dg.MetadataValue.json(dict(sorted(run.by_source.items()))),
    }
    for name, figures in run.pacing.items():
        metadata[f"requests_{name}"] = dg.MetadataValue.json(figures)
    if run.coverage is not None:
        # The whole partition after this run, as plain numbers the UI plots over partitions.
        metadata["partition_postings"] = run.coverage.postings
        metadata["with_description"] = run.coverage.ok
        metadata["with_short_description"] = run.coverage.too_short
        metadata["without_description"] = run.coverage.without_text
        metadata["description_coverage"] = dg.MetadataValue.float(run.coverage.share)
    return metadata
