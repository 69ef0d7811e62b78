"""The `job_descriptions` asset: full description text for the partition's postings."""


import time
from collections import Counter
from pathlib import Path

import dagster as dg

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.clock import berlin_today, utcnow
from ty_pipeline.domain.concurrency import Bounded
from ty_pipeline.domain.description_status import DescriptionStatus, status_after_failure
from ty_pipeline.domain.progress import Progress
from ty_pipeline.fetching.descriptions import fetch_description
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.job_sources import JobSourcesResource
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.descriptions_store import (
    DescriptionOutcome,
    PendingDescription,
    description_coverage,
    pending_descriptions,
    save_description_or_unstorable,
)
from ty_pipeline.warehouse.leases_store import LEASE_TTL, claim, other_holders, release, renew
from ty_pipeline.warehouse.rechecks_store import due_rechecks, save_recheck


class DescriptionsConfig(dg.Config):
    max_postings: int | None = None  # cap for one run (newest first); the rest stays pending


DESCRIPTIONS_CHECK = "no_failed_fetches"
ALL_FAILED_MIN = 5
RECHECKS_PER_RUN = 200  # re-checks of held "gone" postings (any partition) per run: bounded extra detail calls


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
    todo = pending_descriptions(engine, day, limit=config.max_postings)
    left_out = len(pending_descriptions(engine, day)) - len(todo) if config.max_postings else 0
    rechecks = due_rechecks(engine, now=utcnow(), limit=RECHECKS_PER_RUN)
    run_id = context.run.run_id
    # Claim before fetching: a second run of this partition skips what a live run is already fetching.
    wanted = [p.posting_id for p in todo + rechecks]
    holders = other_holders(engine, wanted, run_id=run_id, now=utcnow())
    held = claim(engine, wanted, run_id=run_id, now=utcnow(),
                 takeover_from=_finished_runs(context.instance, holders))
    leased_elsewhere = len(set(wanted) - held)
    todo = [p for p in todo if p.posting_id in held]
    rechecks = [p for p in rechecks if p.posting_id in held]
    if leased_elsewhere:
        context.log.info(f"{leased_elsewhere} postings skipped: another live run is fetching them")
    context.log.info(f"{len(todo)} postings of {day} need a description; {len(rechecks)} held postings re-checked")

    aa_client = jobsuche.get_client()
    db_client = deutsche_bank.get_client()
    sample = SampleSource(Path(job_sources.sample_dir), berlin_today())

    def work(posting: PendingDescription) -> DescriptionOutcome:
        # Pacing lives in each client's limiter, shared by all workers: no pause per call here.
        return fetch_description(posting, jobsuche=aa_client, deutsche_bank=db_client, sample=sample)

    counts: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    failures: list[str] = []
    unstorable: list[str] = []  # "source external_id (posting_id)" of texts the warehouse refused
    unsaved: list[str] = []  # not even a status could be written (the database itself is failing)
    offenders: list[tuple[int, str]] = []  # (posting_id, what went wrong) for the failing check's examples
    recheck_counts: Counter[str] = Counter()
    progress = Progress("descriptions", len(todo) + len(rechecks), context.log.info)
    started = renewed = time.monotonic()
    # Enough threads for both sources to use their full in-flight caps at once; each limiter keeps its
    # source at its cap, so extra threads only wait.
    workers = jobsuche.max_in_flight + deutsche_bank.max_in_flight
    try:
        with Bounded(work, todo + rechecks, workers=workers, name="descriptions") as run:
            for done in run:
                posting = done.item
                if isinstance(done.error, Exception):  # a parser bug is this posting's failure, not the run's
                    outcome = DescriptionOutcome(status_after_failure(posting.attempts),
                                                 error=f"{type(done.error).__name__}: {done.error}"[:500])
                else:
                    outcome = done.result()
                if time.monotonic() - renewed > LEASE_TTL.total_seconds() / 6:
                    renew(engine, run_id=run_id, now=utcnow())
                    renewed = time.monotonic()
                if posting.recheck:
                    try:
                        revived = save_recheck(engine, posting, outcome, utcnow())
                    except Exception as exc:  # noqa: BLE001 - keep saving the others; fail at the end
                        unsaved.append(f"{posting.source} {posting.external_id}: {type(exc).__name__}")
                        progress.step()
                        continue
                    recheck_counts["revived" if revived else f"still_{outcome.status}"] += 1
                    progress.step()
                    continue
                # Saved one by one from this thread: a crash later loses nothing already fetched. One
                # posting's refused text becomes its final status, never the run's end (issue #9).
                try:
                    outcome = save_description_or_unstorable(engine, posting, outcome, utcnow())
                except Exception as exc:  # noqa: BLE001 - keep saving the others; fail at the end
                    unsaved.append(f"{posting.source} {posting.external_id}: {type(exc).__name__}")
                    progress.step()
                    continue
                if outcome.status == DescriptionStatus.UNSTORABLE:
                    unstorable.append(f"{posting.source} {posting.external_id} ({posting.posting_id})")
                    offenders.append((posting.posting_id, f"unstorable: {outcome.error}"))
                    context.log.error(f"description of {posting.source} {posting.external_id} could not be "
                                      f"stored: {outcome.error}")
                counts[str(outcome.status)] += 1
                by_source[f"{posting.source}:{outcome.status}"] += 1
                if outcome.status in (DescriptionStatus.FAILED, DescriptionStatus.GAVE_UP):
                    failures.append(f"{posting.source} {posting.external_id}: {outcome.error}")
                    offenders.append((posting.posting_id, f"{outcome.status}: {outcome.error}"))
                progress.step()
    finally:
        release(engine, run_id=run_id)
        pacing = {name: client.limiter.summary() for name, client in
                  (("arbeitsagentur", aa_client), ("deutsche_bank", db_client))
                  if client.limiter is not None and client.limiter.stats().requests}
        aa_client.close()
        db_client.close()

    for message in failures[:20]:
        context.log.warning(f"description fetch failed: {message}")
    metadata: dict[str, dg.RawMetadataValue] = {
        "processed": len(todo),
        "ok": counts[DescriptionStatus.OK],
        "too_short": counts[DescriptionStatus.TOO_SHORT],
        "external_partner": counts[DescriptionStatus.EXTERNAL_PARTNER],
        "not_found_invalidated": counts[DescriptionStatus.NOT_FOUND],
        "failed_will_retry": counts[DescriptionStatus.FAILED],
        "gave_up": counts[DescriptionStatus.GAVE_UP],
        "unstorable": len(unstorable),
        "unstorable_postings": ", ".join(unstorable[:50]) or "none",
        "pending_left_out": left_out,
        "skipped_leased_by_other_run": leased_elsewhere,
        "rechecked_held_postings": len(rechecks),
        "revived_after_recheck": recheck_counts["revived"],
        "seconds": round(time.monotonic() - started, 2),
        "by_source_and_status": dg.MetadataValue.json(dict(sorted(by_source.items()))),
    }
    for name, figures in pacing.items():
        metadata[f"requests_{name}"] = dg.MetadataValue.json(figures)
    if unsaved:
        raise dg.Failure(
            description=f"{len(unsaved)} description outcome(s) of {day} could not be saved at all "
            f"(every other one was): {'; '.join(unsaved[:5])}",
            metadata=metadata,
        )
    if len(todo) >= ALL_FAILED_MIN and len(failures) == len(todo):
        # Several attempts and not one success: the source is down, which is a failed step, not a
        # partition with a few flaky postings (those are retried on the next run).
        raise dg.Failure(
            description=f"Every description fetch for {day} failed; first: {failures[0]}",
            metadata=metadata,
            allow_retries=False,
        )
    # The whole partition after this run, as plain numbers the UI plots over partitions (read after the
    # failures above: a failing database must not hide their message).
    coverage = description_coverage(engine, day)
    metadata["partition_postings"] = coverage.postings
    metadata["with_description"] = coverage.ok
    metadata["with_short_description"] = coverage.too_short
    metadata["without_description"] = coverage.without_text
    metadata["description_coverage"] = dg.MetadataValue.float(coverage.share)
    passed = not failures and not unstorable
    check = explained(
        check_name=DESCRIPTIONS_CHECK,
        passed=passed,
        reason=f"{len(failures)} description fetches for {day} failed and {len(unstorable)} fetched texts could not "
        "be stored (expected 0); a `failed` fetch is retried by the partition's next run, `gave_up` and "
        "`unstorable` are final",
        examples=[] if passed else posting_examples(engine, offenders),
        total_examples=len(offenders),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": len(failures),
            "examples": dg.MetadataValue.md("\n".join(failures[:5]) or "none"),
            "unstorable": len(unstorable),
            "unstorable_postings": ", ".join(unstorable[:50]) or "none",
        },
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
