"""One partition of `job_descriptions` without Dagster: lease, fetch, save each outcome, release.

`ty_pipeline/assets/descriptions.py` is the Dagster glue around `fetch_descriptions`: it passes the run
id and a way to ask the Dagster instance which lease holders are over, and turns the returned
`DescriptionsRun` into metadata, the check and, for the two failed-step cases, a `Failure`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine

from ty_pipeline.domain.concurrency import Bounded
from ty_pipeline.domain.description_status import DescriptionStatus, status_after_failure
from ty_pipeline.domain.progress import Progress
from ty_pipeline.fetching.descriptions import fetch_description
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline.fetching.source_access import SourceAccess
from ty_pipeline.warehouse.descriptions_store import (
    DescriptionCoverage,
    DescriptionOutcome,
    PendingDescription,
    description_coverage,
    pending_descriptions,
    save_description_or_unstorable,
)
from ty_pipeline.warehouse.leases_store import LEASE_TTL, claim, other_holders, release, renew
from ty_pipeline.warehouse.rechecks_store import due_rechecks, save_recheck

ALL_FAILED_MIN = 5
RECHECKS_PER_RUN = 200  # re-checks of held "gone" postings (any partition) per run: bounded extra detail calls


@dataclass
class DescriptionsRun:
    day: date
    processed: int = 0  # postings of the partition this run fetched (re-checks not included)
    left_out: int = 0  # pending postings beyond `max_postings`
    leased_elsewhere: int = 0  # skipped: another live run holds their lease
    rechecks: int = 0  # held "gone" postings (any partition) re-checked
    counts: Counter[str] = field(default_factory=Counter)  # per status
    by_source: Counter[str] = field(default_factory=Counter)  # per "source:status"
    recheck_counts: Counter[str] = field(default_factory=Counter)  # "revived" or "still_<status>"
    failures: list[str] = field(default_factory=list)  # "source external_id: error" of failed / gave_up fetches
    unstorable: list[str] = field(default_factory=list)  # "source external_id (posting_id)" of refused texts
    unsaved: list[str] = field(default_factory=list)  # not even a status could be written (the database fails)
    offenders: list[tuple[int, str]] = field(default_factory=list)  # (posting_id, what went wrong)
    pacing: dict[str, dict[str, float | int | str | None]] = field(default_factory=dict)  # per source that ran
    seconds: float = 0.0
    # The whole partition after the run; None when the run failed (a failing database must not hide why).
    coverage: DescriptionCoverage | None = None

    @property
    def every_fetch_failed(self) -> bool:
        """Several attempts and not one success: the source is down, which is a failed step, not a
        partition with a few flaky postings (those are retried on the next run)."""
        return self.processed >= ALL_FAILED_MIN and len(self.failures) == self.processed

    @property
    def failed(self) -> bool:
        return bool(self.unsaved) or self.every_fetch_failed


def fetch_descriptions(
    engine: Engine,
    day: date,
    access: SourceAccess,
    *,
    run_id: str,
    finished_runs: Callable[[set[str]], set[str]],
    max_postings: int | None,
    today: date,
    now: Callable[[], datetime],
    log: Callable[[str], None] = lambda _m: None,
    error: Callable[[str], None] = lambda _m: None,
) -> DescriptionsRun:
    """Fetch and save the description of every pending posting of `day` (newest first, at most
    `max_postings`) and re-check due held postings, each under a lease of `run_id`.

    `finished_runs(holders)` names the lease holders known to be over: their leases are taken over.
    Each outcome is saved as it arrives; a refused text becomes `unstorable`, a failed save is listed
    in `unsaved` and the others are still saved. Nothing here raises for one posting's trouble.
    """
    run = DescriptionsRun(day=day)
    todo = pending_descriptions(engine, day, limit=max_postings)
    run.left_out = len(pending_descriptions(engine, day)) - len(todo) if max_postings else 0
    rechecks = due_rechecks(engine, now=now(), limit=RECHECKS_PER_RUN)
    # Claim before fetching: a second run of this partition skips what a live run is already fetching.
    wanted = [p.posting_id for p in todo + rechecks]
    holders = other_holders(engine, wanted, run_id=run_id, now=now())
    held = claim(engine, wanted, run_id=run_id, now=now(), takeover_from=finished_runs(holders))
    run.leased_elsewhere = len(set(wanted) - held)
    todo = [p for p in todo if p.posting_id in held]
    rechecks = [p for p in rechecks if p.posting_id in held]
    run.processed, run.rechecks = len(todo), len(rechecks)
    if run.leased_elsewhere:
        log(f"{run.leased_elsewhere} postings skipped: another live run is fetching them")
    log(f"{len(todo)} postings of {day} need a description; {len(rechecks)} held postings re-checked")

    aa_client = access.jobsuche()
    db_client = access.deutsche_bank()
    sample = SampleSource(access.sample_dir, today)

    def work(posting: PendingDescription) -> DescriptionOutcome:
        # Pacing lives in each client's limiter, shared by all workers: no pause per call here.
        return fetch_description(posting, jobsuche=aa_client, deutsche_bank=db_client, sample=sample)

    progress = Progress("descriptions", len(todo) + len(rechecks), log)
    started = renewed = time.monotonic()
    # Enough threads for both sources to use their full in-flight caps at once; each limiter keeps its
    # source at its cap, so extra threads only wait.
    workers = access.jobsuche_in_flight + access.deutsche_bank_in_flight
    try:
        with Bounded(work, todo + rechecks, workers=workers, name="descriptions") as fetches:
            for done in fetches:
                posting = done.item
                if isinstance(done.error, Exception):  # a parser bug is this posting's failure, not the run's
                    outcome = DescriptionOutcome(status_after_failure(posting.attempts),
                                                 error=f"{type(done.error).__name__}: {done.error}"[:500])
                else:
                    outcome = done.result()
                if time.monotonic() - renewed > LEASE_TTL.total_seconds() / 6:
                    renew(engine, run_id=run_id, now=now())
                    renewed = time.monotonic()
                _record(engine, run, posting, outcome, now, error)
                progress.step()
    finally:
        release(engine, run_id=run_id)
        run.pacing = {name: client.limiter.summary() for name, client in
                      (("arbeitsagentur", aa_client), ("deutsche_bank", db_client))
                      if client.limiter is not None and client.limiter.stats().requests}
        aa_client.close()
        db_client.close()
    run.seconds = time.monotonic() - started
    if not run.failed:
        run.coverage = description_coverage(engine, day)
    return run


def _record(
    engine: Engine,
    run: DescriptionsRun,
    posting: PendingDescription,
    outcome: DescriptionOutcome,
    now: Callable[[], datetime],
    error: Callable[[str], None],
) -> None:
    """Save one outcome and count it."""
    if posting.recheck:
        try:
            revived = save_recheck(engine, posting, outcome, now())
        except Exception as exc:  # noqa: BLE001 - keep saving the others; fail at the end
            run.unsaved.append(f"{posting.source} {posting.external_id}: {type(exc).__name__}")
            return
        run.recheck_counts["revived" if revived else f"still_{outcome.status}"] += 1
        return
    # Saved one by one from the collecting thread: a crash later loses nothing already fetched. One
    # posting's refused text becomes its final status, never the run's end (issue #9).
    try:
        outcome = save_description_or_unstorable(engine, posting, outcome, now())
    except Exception as exc:  # noqa: BLE001 - keep saving the others; fail at the end
        run.unsaved.append(f"{posting.source} {posting.external_id}: {type(exc).__name__}")
        return
    if outcome.status == DescriptionStatus.UNSTORABLE:
        run.unstorable.append(f"{posting.source} {posting.external_id} ({posting.posting_id})")
        run.offenders.append((posting.posting_id, f"unstorable: {outcome.error}"))
        error(f"description of {posting.source} {posting.external_id} could not be stored: {outcome.error}")
    run.counts[str(outcome.status)] += 1
    run.by_source[f"{posting.source}:{outcome.status}"] += 1
    if outcome.status in (DescriptionStatus.FAILED, DescriptionStatus.GAVE_UP):
        run.failures.append(f"{posting.source} {posting.external_id}: {outcome.error}")
        run.offenders.append((posting.posting_id, f"{outcome.status}: {outcome.error}"))
