"""One day of `postings` without Dagster: fetch every source, store, mark seen, invalidate the stale.

`ty_pipeline/assets/postings.py` is the Dagster glue around `ingest_postings`: it reads the resources
and config, calls this once per partition and turns the returned `PostingsRun` into metadata, checks
and, when every source failed, a `Failure`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine, func, select

from ty_pipeline.domain.invalidation import StaleRules
from ty_pipeline.domain.posting_record import Source
from ty_pipeline.domain.undated import UndatedPlacement, place_undated
from ty_pipeline.fetching.deutsche_bank import fetch_deutsche_bank
from ty_pipeline.fetching.jobsuche import fetch_jobsuche
from ty_pipeline.fetching.result import SourceFetch
from ty_pipeline.fetching.sample import SampleSource
from ty_pipeline.fetching.source_access import SourceAccess
from ty_pipeline.warehouse.postings_store import (
    SweepResult,
    UpsertStats,
    count_stored,
    hold_revived_not_found,
    stored_keys,
    sweep_stale_arbeitsagentur,
    sweep_stale_deutsche_bank,
    touch_seen,
    upsert_postings,
)
from ty_pipeline.warehouse.schema import postings as postings_table


@dataclass(frozen=True)
class Sweep:
    """One source's stale sweep in this run: how many it invalidated, and why it ran or not."""

    invalidated: int
    note: str


@dataclass
class PostingsRun:
    day: date
    sources: list[str]
    fetches: list[SourceFetch] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)  # rows of each fetch in the warehouse after the run
    pacing: dict[str, dict[str, float | int | str | None]] = field(default_factory=dict)  # per source
    stats: UpsertStats = field(default_factory=UpsertStats)
    store_seconds: float = 0.0  # the upsert alone: wall and this process's CPU
    store_cpu_seconds: float = 0.0
    touched: int = 0  # known postings listed again under another partition's date
    touch_resurrected: int = 0
    held_again: int = 0  # revived postings whose detail still says "not found"
    sweep_arbeitsagentur: Sweep = Sweep(0, "Jobsuche not fetched in this run")
    sweep_deutsche_bank: Sweep = Sweep(0, "Deutsche Bank not fetched in this run")
    partition_rows: int = 0  # rows of the partition in the warehouse after the run
    # Postings listed without a readable publication date, by where they went (domain/undated.py).
    undated: UndatedPlacement = field(default_factory=UndatedPlacement)

    @property
    def records(self) -> int:
        """Postings fetched for the partition day, over every source."""
        return sum(f.kept for f in self.fetches)

    @property
    def fetch_errors(self) -> list[str]:
        return [e for f in self.fetches for e in f.errors]

    @property
    def errors(self) -> list[str]:
        """Fetch errors first, then the warehouse's."""
        return self.fetch_errors + (self.stats.error_messages or [])

    @property
    def resurrected(self) -> int:
        return self.stats.resurrected + self.touch_resurrected

    @property
    def all_sources_failed(self) -> bool:
        """Nothing arrived and every source failed: a failed partition, not an empty day."""
        return bool(self.errors) and not self.records and all(f.errors for f in self.fetches)

    def kept_per_state(self) -> dict[str, dict[str, int]]:
        """Per source, the day's postings per state (`unknown` without one)."""
        per_state: dict[str, dict[str, int]] = {}
        for f in self.fetches:
            kept_by_state = Counter(r.state or "unknown" for r in f.records)
            per_state[f.source] = dict(sorted(kept_by_state.items()))
        return per_state


def fetch_sources(
    sources: Sequence[str],
    day: date,
    access: SourceAccess,
    *,
    today: date,
    log: Callable[[str], None] = lambda _m: None,
) -> tuple[list[SourceFetch], dict[str, dict[str, float | int | str | None]]]:
    """Every named source's postings for `day`, and each paced client's request figures. A source's
    trouble is in its fetch's `errors`; this raises only for a bug."""
    fetches: list[SourceFetch] = []
    pacing: dict[str, dict[str, float | int | str | None]] = {}
    for source in sources:
        if source == "arbeitsagentur":
            client = access.jobsuche()
            try:
                fetches.append(fetch_jobsuche(client, day, today=today, page_size=access.jobsuche_page_size, log=log))
            finally:
                if client.limiter is not None:
                    pacing[source] = client.limiter.summary()
                client.close()
        elif source == "deutsche_bank":
            client_db = access.deutsche_bank()
            try:
                fetches.append(
                    fetch_deutsche_bank(
                        client_db, day, page_size=access.deutsche_bank_page_size,
                        country_ids=access.deutsche_bank_country_ids, max_items=access.deutsche_bank_max_items,
                        log=log,
                    )
                )
            finally:
                if client_db.limiter is not None:
                    pacing[source] = client_db.limiter.summary()
                client_db.close()
        elif source == "sample":
            for fetch in SampleSource(access.sample_dir, today).fetch(day):
                fetch.source = f"sample:{fetch.source}"
                fetches.append(fetch)
    return fetches, pacing


def ingest_postings(
    engine: Engine,
    day: date,
    sources: Sequence[str],
    access: SourceAccess,
    *,
    today: date,
    now: datetime,
    rules: StaleRules | None = None,
    log: Callable[[str], None] = lambda _m: None,
    warn: Callable[[str], None] = lambda _m: None,
) -> PostingsRun:
    """Fetch `day` from every source, upsert it, mark postings listed under other dates as seen, hold
    revived postings still gone, and run each source's stale sweep after its complete fetch.

    `now` stamps every write of the run. Rows the warehouse refuses are in `stats.lost`, every other row
    is saved; nothing here raises for a source's or a row's trouble.
    """
    log(f"Fetching postings published on {day} from {', '.join(sources)}")
    run = PostingsRun(day=day, sources=list(sources))
    run.fetches, run.pacing = fetch_sources(sources, day, access, today=today, log=log)
    run.undated = file_undated(engine, run.fetches, day=day, today=today, warn=warn)

    records = [r for f in run.fetches for r in f.records]
    started, started_cpu = time.perf_counter(), time.process_time()
    run.stats = upsert_postings(engine, records, partition_date=day, now=now)
    run.store_seconds = time.perf_counter() - started
    run.store_cpu_seconds = time.process_time() - started_cpu
    run.touched, run.touch_resurrected = touch_seen(
        engine, [k for f in run.fetches for k in f.seen_elsewhere], now=now
    )
    run.held_again = hold_revived_not_found(engine, now=now)

    stale = rules or StaleRules()
    run.sweep_arbeitsagentur = _sweep_after_complete_fetch(
        run.fetches, Source.ARBEITSAGENTUR, "Jobsuche", "fetch",
        lambda: sweep_stale_arbeitsagentur(engine, now=now, rules=stale), warn,
    )
    run.sweep_deutsche_bank = _sweep_after_complete_fetch(
        run.fetches, Source.DEUTSCHE_BANK, "Deutsche Bank", "listing",
        lambda: sweep_stale_deutsche_bank(engine, now=now, rules=stale), warn,
    )

    with engine.connect() as conn:
        run.partition_rows = conn.execute(
            select(func.count()).select_from(postings_table).where(postings_table.c.partition_date == day)
        ).scalar_one()
    # Rows that reached the warehouse in this run, per fetch: what the totals check compares.
    run.stored = [sum(count_stored(engine, f.records).values()) for f in run.fetches]
    return run


def file_undated(
    engine: Engine, fetches: list[SourceFetch], *, day: date, today: date,
    warn: Callable[[str], None] = lambda _m: None,
) -> UndatedPlacement:
    """Move each fetch's undated postings into its `records` (new, and this is today's partition) or its
    `seen_elsewhere` (already stored), so the upsert, the sightings, the sweep and the totals check treat
    them like any other posting; the rest wait for today's run. Returns the placement over all fetches."""
    total = UndatedPlacement()
    for fetch in fetches:
        if not fetch.undated:
            continue
        stored = stored_keys(engine, ((str(r.source), r.external_id) for r in fetch.undated))
        placement = place_undated(fetch.undated, stored, day=day, today=today)
        fetch.records.extend(placement.store)
        fetch.seen_elsewhere.extend(placement.seen)
        total.store.extend(placement.store)
        total.seen.extend(placement.seen)
        total.deferred.extend(placement.deferred)
    if total.deferred:
        warn(
            f"{len(total.deferred)} listed posting(s) without a readable publication date are new but not stored "
            f"by this backfill of {day}: they would be filed under a day they were not seen on; the run of "
            f"today's partition ({today}) stores them if they are still listed"
        )
    return total


def _sweep_after_complete_fetch(
    fetches: list[SourceFetch],
    source: Source,
    label: str,
    fetch_kind: str,
    sweep: Callable[[], SweepResult],
    warn: Callable[[str], None],
) -> Sweep:
    """Run a source's stale sweep only after its complete fetch in this run.

    Only a complete fetch makes "unseen" mean "gone"; after a failed one it means "not fetched".
    """
    fetch = next((f for f in fetches if f.source == str(source)), None)
    if fetch is None:
        return Sweep(0, f"{label} not fetched in this run")
    if not fetch.complete:
        return Sweep(0, f"skipped: the {label} {fetch_kind} was incomplete")
    result = sweep()
    if result.skipped_reason:
        warn(result.skipped_reason)
    return Sweep(result.invalidated, result.skipped_reason or "ran")
