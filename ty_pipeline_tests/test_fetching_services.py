"""The Dagster-free services behind `postings` and `job_descriptions`, called directly: real HTTP to the
loopback job APIs, a real SQLite warehouse, no Dagster run (the assets' own tests cover the glue)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from ty_pipeline.clients.deutsche_bank import DeutscheBankClient
from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.clients.jobsuche import JobsucheClient
from ty_pipeline.clients.rate_limit import RateLimit, RateLimiter
from ty_pipeline.domain.clock import berlin_today, utcnow
from ty_pipeline.domain.deutsche_bank_format import GERMANY_COUNTRY_ID
from ty_pipeline.fetching.descriptions_run import ALL_FAILED_MIN, fetch_descriptions
from ty_pipeline.fetching.postings_run import Sweep, ingest_postings
from ty_pipeline.fetching.source_access import SourceAccess
from ty_pipeline.warehouse.leases_store import claim
from ty_pipeline.warehouse.schema import description_leases
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank, make_db_item
from ty_pipeline_tests.fakes.jobsuche_server import DETAIL_PREFIX, FakeJobsuche, make_detail, make_v6_item
from ty_pipeline_tests.helpers import UNUSED_URL

TODAY = berlin_today()
DAY = TODAY - timedelta(days=2)
NOW = datetime(2026, 11, 20, 22, 0)
STATES = ("Bayern", "Hessen", "Sachsen")
TEXT = "**Ihre Aufgaben**\n- Planung und Steuerung von Projekten im Team\n- Abstimmung mit Kunden und Partnern"


def access(aa_url: str, db_url: str) -> SourceAccess:
    """Clients as the resources build them, minus politeness pacing and long backoffs."""
    def policy() -> RetryPolicy:
        return RetryPolicy(max_retries=0, backoff_base_s=0.01)

    def limiter() -> RateLimiter:
        return RateLimiter(RateLimit(1000.0, 6, 6))

    return SourceAccess(
        jobsuche=lambda: JobsucheClient(aa_url, timeout_s=5.0, policy=policy(), limiter=limiter()),
        deutsche_bank=lambda: DeutscheBankClient(db_url, timeout_s=5.0, policy=policy(), limiter=limiter()),
        deutsche_bank_country_ids=[GERMANY_COUNTRY_ID],
    )


def add_aa(fake: FakeJobsuche, i: int, state: str) -> None:
    item = make_v6_item(f"10001-{1000000000 + i}-S", f"Projektleiter/in {i} (m/w/d)", published=DAY, state=state,
                        city="Stadt", plz=f"{10000 + i:05d}", hauptberuf="Projektleiter/in")
    fake.add(item, state=state, detail=make_detail(item, f"{TEXT}\nReferenz {i}"))


def add_db(fake: FakeDeutscheBank, pid: str) -> None:
    item = make_db_item(pid, f"Relationship Manager {pid} (m/w/d)", published=DAY, city="Frankfurt",
                        subdivision="Hessen")
    fake.add(item, html=f"<h2>RM {pid}</h2><ul><li>{TEXT}</li></ul>")


@pytest.fixture
def aa() -> Iterator[FakeJobsuche]:
    with FakeJobsuche(today=TODAY) as fake:
        for i, state in enumerate(STATES):
            add_aa(fake, i, state)
        yield fake


@pytest.fixture
def db() -> Iterator[FakeDeutscheBank]:
    with FakeDeutscheBank() as fake:
        for pid in ("70001", "70002", "70003"):
            add_db(fake, pid)
        yield fake


BOTH = ["arbeitsagentur", "deutsche_bank"]


def test_ingest_stores_every_source_and_sweeps_only_after_a_complete_listing(
    sqlite_engine: sa.Engine, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    warnings: list[str] = []
    first = ingest_postings(sqlite_engine, DAY, BOTH, access(aa.base_url, db.base_url), today=TODAY, now=NOW,
                            warn=warnings.append)
    assert [f.source for f in first.fetches] == BOTH
    assert (first.stats.new, first.records, first.stored, first.partition_rows) == (6, 6, [3, 3], 6)
    assert first.kept_per_state()["arbeitsagentur"] == {s: 1 for s in STATES}
    assert set(first.pacing) == set(BOTH) and first.pacing["arbeitsagentur"]["requests"]
    assert (first.sweep_arbeitsagentur.note, first.sweep_deutsche_bank.note) == ("ran", "ran")
    assert not first.errors and not first.all_sources_failed and not warnings

    # Three days later one Deutsche Bank posting is no longer listed; the listing is complete: removed.
    db.remove("70003")
    later = ingest_postings(sqlite_engine, DAY, BOTH, access(aa.base_url, db.base_url), today=TODAY,
                            now=NOW + timedelta(days=3))
    assert later.sweep_deutsche_bank.invalidated == 1 and later.stats.new == 0

    # A failed listing never invalidates: "unseen" then means "not fetched".
    db.fail_next("/search", status=500, times=1)
    failed = ingest_postings(sqlite_engine, DAY, BOTH, access(aa.base_url, db.base_url), today=TODAY,
                             now=NOW + timedelta(days=9))
    assert failed.sweep_deutsche_bank == Sweep(0, "skipped: the Deutsche Bank listing was incomplete")
    assert failed.fetch_errors and not failed.all_sources_failed  # Jobsuche still delivered
    assert failed.errors[: len(failed.fetch_errors)] == failed.fetch_errors

    # A sweep that would remove most postings is an API problem: skipped, and the reason is warned.
    db.remove("70002")
    db.remove("70001")
    add_db(db, "70009")
    guarded = ingest_postings(sqlite_engine, DAY, BOTH, access(aa.base_url, db.base_url), today=TODAY,
                              now=NOW + timedelta(days=12), warn=warnings.append)
    assert guarded.sweep_deutsche_bank.invalidated == 0
    assert warnings == [guarded.sweep_deutsche_bank.note] and "suggests an API problem" in warnings[0]


def test_every_source_failing_is_reported_not_raised(sqlite_engine: sa.Engine) -> None:
    run = ingest_postings(sqlite_engine, DAY, BOTH, access(UNUSED_URL, UNUSED_URL), today=TODAY, now=NOW)
    assert run.all_sources_failed and run.records == 0 and len(run.fetch_errors) >= 2
    assert run.sweep_arbeitsagentur.note == "skipped: the Jobsuche fetch was incomplete"
    # Only the named sources are fetched; a source not asked for is "not fetched", never swept.
    only_db = ingest_postings(sqlite_engine, DAY, ["deutsche_bank"], access(UNUSED_URL, UNUSED_URL), today=TODAY, now=NOW)
    assert [f.source for f in only_db.fetches] == ["deutsche_bank"]
    assert only_db.sweep_arbeitsagentur.note == "Jobsuche not fetched in this run"


def test_descriptions_respect_live_leases_and_release_their_own(
    sqlite_engine: sa.Engine, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    sources = access(aa.base_url, db.base_url)
    ingest_postings(sqlite_engine, DAY, BOTH, sources, today=TODAY, now=NOW)
    with sqlite_engine.connect() as conn:
        one, leased_source = conn.execute(
            sa.text("SELECT posting_id, source FROM postings ORDER BY posting_id LIMIT 1")).one()
    claim(sqlite_engine, [one], run_id="other-run", now=utcnow())
    asked: list[set[str]] = []

    def still_running(holders: set[str]) -> set[str]:
        asked.append(holders)
        return set()

    run = fetch_descriptions(sqlite_engine, DAY, sources, run_id="this-run", finished_runs=still_running,
                             max_postings=None, today=TODAY, now=utcnow)
    assert asked == [{"other-run"}]
    assert (run.processed, run.leased_elsewhere, run.counts["ok"]) == (5, 1, 5)
    expected = {"arbeitsagentur:ok": 3, "deutsche_bank:ok": 3}
    expected[f"{leased_source}:ok"] -= 1
    assert run.by_source == expected
    assert run.coverage is not None and (run.coverage.postings, run.coverage.ok) == (6, 5)
    assert not run.failed and set(run.pacing) <= set(BOTH) and run.pacing
    with sqlite_engine.connect() as conn:
        holders = set(conn.execute(sa.select(description_leases.c.run_id)).scalars())
    assert holders == {"other-run"}  # this run's leases are released, the live holder's stays

    # Once the instance reports the holder finished, its posting is taken over and fetched.
    rest = fetch_descriptions(sqlite_engine, DAY, sources, run_id="third-run", finished_runs=lambda held: held,
                              max_postings=None, today=TODAY, now=utcnow)
    assert (rest.processed, rest.leased_elsewhere, rest.counts["ok"]) == (1, 0, 1)
    assert rest.coverage is not None and rest.coverage.ok == 6


def test_every_description_failing_marks_the_run_failed_without_reading_coverage(
    sqlite_engine: sa.Engine, aa: FakeJobsuche
) -> None:
    for i in range(len(STATES), ALL_FAILED_MIN):
        add_aa(aa, i, "Berlin")
    sources = access(aa.base_url, UNUSED_URL)
    ingest_postings(sqlite_engine, DAY, ["arbeitsagentur"], sources, today=TODAY, now=NOW)
    aa.fail_next(DETAIL_PREFIX, status=500, times=100)
    run = fetch_descriptions(sqlite_engine, DAY, sources, run_id="r", finished_runs=lambda _h: set(),
                             max_postings=None, today=TODAY, now=utcnow)
    assert run.processed == ALL_FAILED_MIN and len(run.failures) == ALL_FAILED_MIN
    assert run.every_fetch_failed and run.failed and run.coverage is None
    assert run.counts["failed"] == ALL_FAILED_MIN and len(run.offenders) == ALL_FAILED_MIN

    # A capped run leaves the rest pending and says how many.
    capped = fetch_descriptions(sqlite_engine, DAY, sources, run_id="r2", finished_runs=lambda _h: set(),
                                max_postings=2, today=TODAY, now=utcnow)
    assert (capped.processed, capped.left_out) == (2, ALL_FAILED_MIN - 2)
