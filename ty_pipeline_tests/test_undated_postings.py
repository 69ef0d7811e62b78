"""Deutsche Bank postings listed without a readable publication date are stored once, never lost.

The Deutsche Bank listing has no date filter: the fetch keeps the items published on the partition day.
An item whose `PublicationStartDate` is missing or unreadable matched no day and was stored nowhere,
silently. The rule (docs/domain_rules.md §1.4): such a posting is filed under the day it is first seen,
only by the run of today's partition (a backfill would file it under a wrong old day), with
`published_date` left NULL; a known one is only marked seen. Everything goes over real HTTP to the
fake Deutsche Bank API, through the real `postings` asset, into SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.assets.postings import postings
from ty_pipeline.checks.ingestion import INGESTION_CHECKS, fetch_matches_reported_totals
from ty_pipeline.domain.clock import berlin_today, utcnow
from ty_pipeline.domain.posting_record import PostingRecord, Source
from ty_pipeline.domain.undated import place_undated
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.schema import postings as postings_table
from ty_pipeline.warehouse.status_queries import collect_status
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche
from ty_pipeline_tests.helpers import resources_for
from ty_pipeline_tests.test_bad_input_storage import evaluation
from ty_pipeline_tests.test_postings_assets import add_db, check_passed, mat_metadata, run

# What `normalize_db_item` reads as "no date" (`parse_iso_date`): absent, null, not a string, too
# short, or not an ISO date (`31.12.2026` is ten characters but German order).
NO_DATE: dict[str, Any] = {
    "90001": "absent",
    "90002": None,
    "90003": "",
    "90004": "31.12.2026",
    "90005": "2026-13-45",
    "90006": 20261204,
}


def add_undated(db: FakeDeutscheBank, pid: str, value: Any = "absent") -> None:
    item = add_db(db, pid)
    descriptor = item["MatchedObjectDescriptor"]
    if value == "absent":
        del descriptor["PublicationStartDate"]
    else:
        descriptor["PublicationStartDate"] = value
    db.add(item, html=f"<p>{pid}</p>")


def rows(url: str) -> dict[str, dict[str, Any]]:
    with get_engine(url).connect() as conn:
        found = conn.execute(sa.select(postings_table).where(postings_table.c.source == "deutsche_bank"))
        return {r.external_id: dict(r._mapping) for r in found}


def db_run(url: str, aa: FakeJobsuche, db: FakeDeutscheBank, day: date) -> dg.ExecuteInProcessResult:
    return run(url, aa, db, sources="deutsche_bank", assets=[postings], day=day)


def shift_seen_back(url: str, days: int) -> None:
    """Pretend the last listing was `days` days ago."""
    engine = get_engine(url)
    expr = (f"last_seen_at - INTERVAL '{days} days'" if engine.dialect.name == "postgresql"
            else f"datetime(last_seen_at, '-{days} days')")
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE postings SET last_seen_at = {expr}"))  # noqa: S608 - fixed text


def test_undated_postings_are_stored_once_by_todays_run_without_an_invented_date(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    today = berlin_today()
    add_db(db, "80001", published=today)
    for pid, value in NO_DATE.items():
        add_undated(db, pid, value)
    resources = resources_for(warehouse_url, aa_url=aa.base_url, db_url=db.base_url, sources="deutsche_bank")
    with dg.instance_for_test() as instance:
        result = dg.materialize([postings, *INGESTION_CHECKS], partition_key=today.isoformat(), instance=instance,
                                resources=resources, selection=[postings, fetch_matches_reported_totals])
        stored = rows(warehouse_url)
        assert sorted(stored) == ["80001", *NO_DATE]
        for pid in NO_DATE:
            assert stored[pid]["partition_date"] == today
            assert stored[pid]["published_date"] is None and stored[pid]["first_published_date"] is None
        assert stored["80001"]["published_date"] == today
        meta = mat_metadata(result, "postings")
        assert (meta["new"], meta["undated_stored"], meta["undated_seen"], meta["undated_deferred"]) == (7, 6, 0, 0)
        assert (meta["kept_deutsche_bank"], meta["stored_deutsche_bank"], meta["dagster/row_count"]) == (7, 7, 7)
        assert check_passed(result, "all_postings_stored")
        assert evaluation(result, "fetch_matches_reported_totals")[0]

        # A second run of today finds them stored: marked seen, not inserted again, not counted twice.
        again = dg.materialize([postings, *INGESTION_CHECKS], partition_key=today.isoformat(), instance=instance,
                               resources=resources, selection=[postings, fetch_matches_reported_totals])
    meta = mat_metadata(again, "postings")
    assert (meta["new"], meta["undated_stored"], meta["undated_seen"]) == (0, 0, 6)
    assert (meta["kept_deutsche_bank"], meta["stored_deutsche_bank"], meta["dagster/row_count"]) == (1, 1, 7)
    assert evaluation(again, "fetch_matches_reported_totals")[0]
    assert rows(warehouse_url) == stored | {"80001": rows(warehouse_url)["80001"]}
    assert len(rows(warehouse_url)) == 7
    # The status command counts them once, in today's partition.
    report = collect_status(get_engine(warehouse_url), today=today, days=7, now=utcnow(), window_hours=3.0,
                            llm_sources=("deutsche_bank",), assets=["postings"])
    assert {day: t.total for day, t in report.assets[0].partitions.items() if t.total} == {today: 7}


def test_a_backfill_of_an_older_day_leaves_an_undated_posting_to_todays_run(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    today = berlin_today()
    old = today - timedelta(days=5)
    add_db(db, "80001", published=old)
    add_undated(db, "90001")

    backfill = db_run(warehouse_url, aa, db, old)
    assert backfill.success
    assert sorted(rows(warehouse_url)) == ["80001"]  # not filed under a day it was not first seen on
    meta = mat_metadata(backfill, "postings")
    assert (meta["undated_stored"], meta["undated_seen"], meta["undated_deferred"]) == (0, 0, 1)

    assert db_run(warehouse_url, aa, db, today).success
    assert rows(warehouse_url)["90001"]["partition_date"] == today

    # Known now, a later backfill only marks it seen: it stays in today's partition.
    shift_seen_back(warehouse_url, 1)
    seen_before = rows(warehouse_url)["90001"]["last_seen_at"]
    again = db_run(warehouse_url, aa, db, old)
    meta = mat_metadata(again, "postings")
    assert (meta["undated_stored"], meta["undated_seen"], meta["undated_deferred"]) == (0, 1, 0)
    row = rows(warehouse_url)["90001"]
    assert row["partition_date"] == today and row["published_date"] is None
    assert row["last_seen_at"] > seen_before


def test_an_undated_posting_stays_alive_while_listed_and_is_swept_when_it_leaves(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    today = berlin_today()
    for pid in ("80001", "80002", "80003"):
        add_db(db, pid, published=today)
    add_undated(db, "90001")
    assert db_run(warehouse_url, aa, db, today).success

    shift_seen_back(warehouse_url, 3)  # three days later it is still listed, dated ones too
    listed = db_run(warehouse_url, aa, db, today)
    assert mat_metadata(listed, "postings")["stale_invalidated_deutsche_bank"] == 0
    assert not rows(warehouse_url)["90001"]["invalidated"]

    shift_seen_back(warehouse_url, 3)  # then it leaves the listing
    db.remove("90001")
    gone = db_run(warehouse_url, aa, db, today)
    assert mat_metadata(gone, "postings")["stale_invalidated_deutsche_bank"] == 1
    row = rows(warehouse_url)["90001"]
    assert row["invalidated"] and row["invalidated_reason"] == "removed_from_source"
    assert not any(r["invalidated"] for pid, r in rows(warehouse_url).items() if pid != "90001")


def test_a_dated_posting_listed_later_without_a_date_keeps_its_date_and_partition(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    today = berlin_today()
    old = today - timedelta(days=3)
    add_db(db, "80001", published=old)
    assert db_run(warehouse_url, aa, db, old).success

    add_undated(db, "80001", "")  # the same posting, its date now unreadable
    result = db_run(warehouse_url, aa, db, today)
    meta = mat_metadata(result, "postings")
    assert (meta["new"], meta["updated"], meta["undated_seen"]) == (0, 0, 1)
    row = rows(warehouse_url)["80001"]
    assert (row["partition_date"], row["published_date"]) == (old, old)  # nothing misstated


def test_the_rule_files_new_ones_only_today_and_known_ones_as_sightings() -> None:
    today = date(2026, 12, 4)
    known, new = (PostingRecord(Source.DEUTSCHE_BANK, pid, "RM") for pid in ("1", "2"))
    stored = {("deutsche_bank", "1")}
    on_today = place_undated([known, new], stored, day=today, today=today)
    assert (on_today.store, on_today.seen, on_today.deferred) == ([new], [("deutsche_bank", "1")], [])
    backfill = place_undated([known, new], stored, day=today - timedelta(days=1), today=today)
    assert (backfill.store, backfill.seen, backfill.deferred) == ([], [("deutsche_bank", "1")], [("deutsche_bank", "2")])
