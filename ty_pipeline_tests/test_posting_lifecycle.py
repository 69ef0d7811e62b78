"""A posting's life after ingestion (issue #9 defects 3, 11, 15d): "gone" wins over a lagging listing,
reruns change no row, sweeps only after a complete fetch, and concurrent runs do not fetch twice.

Real HTTP to the fake job APIs, real SQLite and PostgreSQL warehouses. Time passing is simulated by
moving the stored timestamps back, never by waiting.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.warehouse.check_queries import description_coverage
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.schema import metadata
from ty_pipeline.warehouse.schema import postings as postings_table
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank
from ty_pipeline_tests.fakes.http_base import Request, Response
from ty_pipeline_tests.fakes.jobsuche_server import DETAIL_PREFIX, FakeJobsuche, make_detail, make_v6_item
from ty_pipeline_tests.helpers import resources_for, table_rows
from ty_pipeline_tests.test_postings_assets import (
    DAY,
    DESCRIPTION,
    TODAY,
    add_aa,
    add_db,
    enriched,
    mat_metadata,
    refnr,
    run,
)

_TIME_COLUMNS = {
    "postings": ("first_seen_at", "last_seen_at", "invalidated_at", "recheck_after"),
    "job_descriptions": ("fetched_at",),
}



def dump(url: str) -> dict[str, list[dict]]:
    """Every row of the ingestion tables, timestamps included."""
    return table_rows(url, "postings", "job_descriptions", "description_leases")


def shift_back(url: str, days: int) -> None:
    """Pretend `days` days have passed: move every stored timestamp back."""
    engine = get_engine(url)
    with engine.begin() as conn:
        for table, columns in _TIME_COLUMNS.items():
            for col in (c for c in columns if c in metadata.tables[table].c):
                expr = (f"{col} - INTERVAL '{days} days'" if engine.dialect.name == "postgresql"
                        else f"datetime({col}, '-{days} days')")
                conn.execute(sa.text(f"UPDATE {table} SET {col} = {expr} WHERE {col} IS NOT NULL"))


def posting_row(url: str, source: str, external_id: str) -> dict:
    with get_engine(url).connect() as conn:
        return dict(conn.execute(sa.select(postings_table).where(
            postings_table.c.source == source, postings_table.c.external_id == external_id)).one()._mapping)


def add_gone(aa: FakeJobsuche, i: int, state: str = "Berlin", published=DAY) -> dict:  # type: ignore[no-untyped-def]
    """Listed by the search, but its detail answers 404 (the index lags behind the detail endpoint)."""
    item = make_v6_item(refnr(i), f"Sachbearbeiter/in {i} (m/w/d)", published=published, state=state,
                        city="Berlin", plz="10115", hauptberuf="Sachbearbeiter/in")
    aa.add(item, state=state, detail=None, detail_status=404)
    return item


# -- defect 3 ---------------------------------------------------------------------------------------------


def test_a_detail_404_wins_over_listings_and_a_rerun_changes_no_row(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    """Reproduction: a listed posting whose details answer 404 used to come back to life on every rerun."""
    for i in range(3):
        add_aa(aa, i, "Hamburg")
    add_gone(aa, 10)
    add_gone(aa, 11, published=DAY + timedelta(days=1))  # belongs to the next day's partition
    add_db(db, "70001")
    add_db(db, "70002", html="")  # Deutsche Bank's jobhtml for a taken-down ad: empty

    first = run(warehouse_url, aa, db)
    assert first.success
    after_first = dump(warehouse_url)
    gone = posting_row(warehouse_url, "arbeitsagentur", refnr(10))
    assert gone["invalidated"] and gone["invalidated_reason"] == "not_found_at_source"

    second = run(warehouse_url, aa, db)  # the same listing carries the gone posting again
    assert second.success
    assert dump(warehouse_url) == after_first  # every row identical, timestamps included
    meta = mat_metadata(second, "postings")
    assert (meta["new"], meta["updated"], meta["resurrected"], meta["listed_but_held_gone"]) == (0, 0, 0, 2)
    assert mat_metadata(second, "job_descriptions")["processed"] == 0

    # The next day's listing overlaps and still carries it: still gone.
    run(warehouse_url, aa, db, day=DAY + timedelta(days=1))
    for key in (("arbeitsagentur", refnr(10)), ("deutsche_bank", "70002")):
        assert enriched(warehouse_url)[key]["invalidated"], key
    assert posting_row(warehouse_url, "arbeitsagentur", refnr(11))["invalidated"]
    # Completeness (and with it demand and status, which all read `invalidated`) leaves them out.
    coverage = description_coverage(get_engine(warehouse_url), DAY)
    assert (coverage.in_scope, coverage.done) == (4, 4)  # 3 Hamburg + Deutsche Bank 70001


def test_a_held_posting_is_rechecked_after_days_at_most_twice_and_revived_only_by_a_successful_detail(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    add_aa(aa, 1, "Bremen")
    always_gone = add_gone(aa, 20)
    comes_back = add_gone(aa, 21)
    assert run(warehouse_url, aa, db, sources="arbeitsagentur").success

    def calls(item: dict) -> int:
        return aa.detail_calls().count(item["referenznummer"])

    # A rerun right away re-checks nothing: the index lags, asking again now only repeats the 404.
    run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert (calls(always_gone), calls(comes_back)) == (1, 1)

    shift_back(warehouse_url, 4)  # four days later the listing still carries both
    third = run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert (calls(always_gone), calls(comes_back)) == (2, 2)
    assert mat_metadata(third, "job_descriptions")["rechecked_held_postings"] == 2
    assert mat_metadata(third, "job_descriptions")["revived_after_recheck"] == 0
    row = posting_row(warehouse_url, "arbeitsagentur", refnr(20))
    assert row["invalidated"] and row["rechecks"] == 1 and row["invalidated_reason"] == "not_found_at_source"

    aa.add(comes_back, state="Berlin", detail=make_detail(comes_back, f"{DESCRIPTION}\nwieder da"))
    shift_back(warehouse_url, 4)
    fourth = run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert mat_metadata(fourth, "job_descriptions")["revived_after_recheck"] == 1
    back = enriched(warehouse_url)[("arbeitsagentur", refnr(21))]
    assert not back["invalidated"] and back["invalidated_reason"] is None
    assert back["description_status"] == "ok" and "wieder da" in back["job_description"]
    assert posting_row(warehouse_url, "arbeitsagentur", refnr(20))["rechecks"] == 2

    shift_back(warehouse_url, 4)  # bounded: no third re-check, however long it stays listed
    run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert calls(always_gone) == 3
    assert enriched(warehouse_url)[("arbeitsagentur", refnr(20))]["invalidated"]


def test_a_deutsche_bank_posting_removed_then_listed_again_is_revived_only_after_its_jobhtml_answers(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for pid in ("71", "72", "73"):
        add_db(db, pid)
    assert run(warehouse_url, aa, db, sources="deutsche_bank").success
    db.remove("73")
    shift_back(warehouse_url, 3)
    run(warehouse_url, aa, db, sources="deutsche_bank", assets=[postings])
    assert posting_row(warehouse_url, "deutsche_bank", "73")["invalidated_reason"] == "removed_from_source"

    item = add_db(db, "73", html="")  # listed again (a lagging, partial listing), but the ad is empty
    shift_back(warehouse_url, 1)
    listed = run(warehouse_url, aa, db, sources="deutsche_bank")
    assert mat_metadata(listed, "postings")["listed_but_held_gone"] == 1
    row = posting_row(warehouse_url, "deutsche_bank", "73")
    assert row["invalidated"] and row["rechecks"] == 1  # re-checked at once: the removal rested on absence

    db.set_html(item["MatchedObjectId"], f"<h2>RM 73</h2><p>{DESCRIPTION}</p>")
    shift_back(warehouse_url, 4)
    run(warehouse_url, aa, db, sources="deutsche_bank")
    revived = enriched(warehouse_url)[("deutsche_bank", "73")]
    assert not revived["invalidated"] and revived["description_status"] == "ok"


def test_postings_revived_by_older_code_are_held_again(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    add_gone(aa, 30)
    assert run(warehouse_url, aa, db, sources="arbeitsagentur").success
    with get_engine(warehouse_url).begin() as conn:  # what the old upsert did on every rerun
        conn.execute(sa.update(postings_table).values(invalidated=False, invalidated_reason=None, invalidated_at=None))
    result = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings])
    assert mat_metadata(result, "postings")["revived_not_found_reinvalidated"] == 1
    assert posting_row(warehouse_url, "arbeitsagentur", refnr(30))["invalidated_reason"] == "not_found_at_source"


# -- defect 11 --------------------------------------------------------------------------------------------


def test_the_jobsuche_sweep_runs_only_after_a_complete_jobsuche_fetch(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i in range(4):
        add_aa(aa, i, "Saarland")
    add_db(db, "70001")
    assert run(warehouse_url, aa, db, assets=[postings]).success
    with get_engine(warehouse_url).begin() as conn:  # posting 0: first seen 40 days ago, unseen for 10
        conn.execute(sa.update(postings_table).where(postings_table.c.external_id == refnr(0)).values(
            first_seen_at=utcnow() - timedelta(days=40), last_seen_at=utcnow() - timedelta(days=10)))
    aa.remove(refnr(0))

    aa.fail_next("/pc/v6/jobs", status=403, times=1000)  # a Jobsuche outage; Deutsche Bank still answers
    outage = run(warehouse_url, aa, db, assets=[postings])
    assert outage.success
    assert mat_metadata(outage, "postings")["jobsuche_sweep"] == "skipped: the Jobsuche fetch was incomplete"
    db_only = run(warehouse_url, aa, db, sources="deutsche_bank", assets=[postings])
    assert mat_metadata(db_only, "postings")["jobsuche_sweep"] == "Jobsuche not fetched in this run"
    assert not posting_row(warehouse_url, "arbeitsagentur", refnr(0))["invalidated"]

    aa.faults.clear()
    complete = run(warehouse_url, aa, db, assets=[postings])
    meta = mat_metadata(complete, "postings")
    assert (meta["jobsuche_sweep"], meta["stale_invalidated_arbeitsagentur"]) == ("ran", 1)
    assert posting_row(warehouse_url, "arbeitsagentur", refnr(0))["invalidated_reason"] == "stale_unseen"


def test_the_jobsuche_sweep_refuses_to_invalidate_more_than_half(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i in range(4):
        add_aa(aa, i, "Saarland")
    assert run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings]).success
    old = [refnr(i) for i in range(3)]
    with get_engine(warehouse_url).begin() as conn:
        conn.execute(sa.update(postings_table).where(postings_table.c.external_id.in_(old)).values(
            first_seen_at=utcnow() - timedelta(days=40), last_seen_at=utcnow() - timedelta(days=10)))
    for ext in old:
        aa.remove(ext)
    result = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings])
    assert "suggests a fetch problem" in mat_metadata(result, "postings")["jobsuche_sweep"]
    assert not any(r["invalidated"] for r in enriched(warehouse_url).values())


# -- 15d: concurrent runs of one partition ------------------------------------------------------------------


def test_leases_let_one_run_hold_a_posting_until_release_expiry_or_takeover(warehouse_url: str) -> None:
    from ty_pipeline.domain.posting_record import PostingRecord, Source
    from ty_pipeline.warehouse.engine import ensure_schema
    from ty_pipeline.warehouse.leases_store import claim, other_holders, release
    from ty_pipeline.warehouse.postings_store import upsert_postings

    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    now = utcnow()
    upsert_postings(engine, [PostingRecord(Source.ARBEITSAGENTUR, f"x{i}", "T", raw={}) for i in range(4)],
                    partition_date=DAY, now=now)
    with engine.connect() as conn:
        ids = sorted(conn.execute(sa.select(postings_table.c.posting_id)).scalars())
    assert claim(engine, ids[:3], run_id="run-a", now=now) == set(ids[:3])
    assert claim(engine, ids, run_id="run-b", now=now) == {ids[3]}  # only what run-a does not hold
    assert other_holders(engine, ids, run_id="run-b", now=now) == {"run-a"}
    assert claim(engine, ids, run_id="run-b", now=now, takeover_from={"run-a"}) == set(ids)
    release(engine, run_id="run-b")
    assert claim(engine, ids[:1], run_id="run-c", now=now) == {ids[0]}
    later = now + timedelta(hours=1)  # run-c died: its lease expires
    assert claim(engine, ids[:1], run_id="run-d", now=later) == {ids[0]}


class GatedJobsuche(FakeJobsuche):
    """Detail requests wait at a gate, so a test can start a second run while the first is fetching."""

    def __init__(self, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kw)
        self.fetching = threading.Event()
        self.gate = threading.Event()

    def handle(self, request: Request) -> Response:
        if request.path.startswith(DETAIL_PREFIX):
            self.fetching.set()
            self.gate.wait(timeout=120)  # a safety net for a broken test, not a timing assumption
        return super().handle(request)


def test_a_second_run_of_the_partition_skips_what_a_live_run_is_fetching(
    warehouse_url: str, db: FakeDeutscheBank
) -> None:
    with GatedJobsuche(today=TODAY) as aa:
        for i in range(6):
            add_aa(aa, i, "Berlin")
        assert run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings]).success
        outcome: dict[str, dg.ExecuteInProcessResult] = {}
        first = threading.Thread(target=lambda: outcome.update(
            first=run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[job_descriptions])))
        first.start()
        try:
            assert aa.fetching.wait(timeout=120)  # the first run holds its leases and is fetching
            second = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[job_descriptions])
        finally:
            aa.gate.set()
            first.join(timeout=300)
        meta = mat_metadata(second, "job_descriptions")
        assert (meta["processed"], meta["skipped_leased_by_other_run"]) == (0, 6)
        assert outcome["first"].success and mat_metadata(outcome["first"], "job_descriptions")["ok"] == 6
        assert sorted(aa.detail_calls()) == sorted(refnr(i) for i in range(6))  # each fetched exactly once
    assert dump(warehouse_url)["description_leases"] == []  # released at the end


def test_leases_of_a_run_the_instance_reports_finished_are_taken_over(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    from ty_pipeline.warehouse.leases_store import claim

    for i in range(3):
        add_aa(aa, i, "Berlin")
    engine = get_engine(warehouse_url)
    with dg.instance_for_test() as instance:
        fetched = dg.materialize([postings], partition_key=DAY.isoformat(), instance=instance,
                                 resources=resources_for(warehouse_url, aa_url=aa.base_url, sources="arbeitsagentur"))
        with engine.connect() as conn:
            ids = list(conn.execute(sa.select(postings_table.c.posting_id)).scalars())
        # A run that died without releasing (kill -9), known to this instance as finished ...
        claim(engine, ids[:2], run_id=fetched.run_id, now=utcnow())
        # ... and one from elsewhere that the instance cannot judge: trusted until its lease expires.
        claim(engine, ids[2:], run_id="other-instance-run", now=utcnow())
        result = dg.materialize([job_descriptions], partition_key=DAY.isoformat(), instance=instance,
                                resources=resources_for(warehouse_url, aa_url=aa.base_url, sources="arbeitsagentur"))
    meta = mat_metadata(result, "job_descriptions")
    assert (meta["processed"], meta["skipped_leased_by_other_run"]) == (2, 1)


@pytest.mark.parametrize("config_dir", [".", "deploy/quickstart"])
def test_both_instance_configs_queue_a_second_run_of_the_same_partition(
    config_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """The run queue holds a second run of a partition while one runs; other partitions go ahead."""
    import shutil
    from pathlib import Path

    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster._utils.tags import TagConcurrencyLimitsCounter  # what the run-queue daemon consults

    source = Path(__file__).resolve().parents[1] / config_dir
    if config_dir == ".":  # production: PostgreSQL storage; validate the file against Dagster's schema
        monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://dagster@127.0.0.1:5432/unused")
        config, _ = dagster_instance_config(str(source), "dagster.yaml")
        limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    else:  # the Quickstart instance loads as is
        shutil.copy(source / "dagster.yaml", tmp_path / "dagster.yaml")
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    nightly = DagsterRun(job_name="nightly_pipeline", tags={"dagster/partition": DAY.isoformat()})
    counter = TagConcurrencyLimitsCounter(limits, [nightly])
    rerun = DagsterRun(job_name="__ASSET_JOB", tags={"dagster/partition": DAY.isoformat()})
    other_day = DagsterRun(job_name="__ASSET_JOB", tags={"dagster/partition": (DAY - timedelta(days=1)).isoformat()})
    assert counter.is_blocked(rerun) and not counter.is_blocked(other_day)
