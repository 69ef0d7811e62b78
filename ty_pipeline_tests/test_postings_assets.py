"""`postings` and `job_descriptions` end to end: real HTTP to the fake job APIs, real warehouses."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.domain.clock import berlin_today
from ty_pipeline.domain.jobsuche_format import encode_refnr
from ty_pipeline.domain.states import STATES
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank, make_db_item
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche, make_detail, make_v6_item
from ty_pipeline_tests.helpers import resources_for, table_rows

TODAY = berlin_today()
DAY = TODAY - timedelta(days=2)
DESCRIPTION = (
    "**Ihre Aufgaben**\n- Planung und Steuerung von Projekten im Team\n- Abstimmung mit Kunden und Partnern\n\n"
    "**Ihr Profil**\n- Abgeschlossene Ausbildung oder Studium\n- Sehr gute Deutschkenntnisse"
)
CITY_FOR = {s: s.split("-")[0] for s in STATES}


def refnr(i: int) -> str:
    return f"10001-{1000000000 + i}-S"



def add_aa(fake: FakeJobsuche, i: int, state: str, published: date = DAY, **kw: Any) -> dict:
    item = make_v6_item(refnr(i), f"Projektleiter/in {i} (m/w/d)", published=published, state=state,
                        city=CITY_FOR[state], plz=f"{10000 + i:05d}", hauptberuf="Projektleiter/in", **kw)
    detail = kw.pop("detail", None) or make_detail(item, f"{DESCRIPTION}\nReferenz {i}")
    fake.add(item, state=state, detail=detail)
    return item


def add_db(fake: FakeDeutscheBank, pid: str, published: date = DAY, html: str | None = None) -> dict:
    item = make_db_item(pid, f"Relationship Manager {pid} (m/w/d)", published=published, city="Frankfurt",
                        subdivision="Hessen")
    fake.add(item, html=html if html is not None else f"<h2>RM {pid}</h2><ul><li>{DESCRIPTION}</li></ul>")
    return item


def run(warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank, *, assets=None, sources: str = "arbeitsagentur,deutsche_bank",
        day: date = DAY, raise_on_error: bool = True, **kw: Any) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets or [postings, job_descriptions],
        partition_key=day.isoformat(),
        resources=resources_for(warehouse_url, aa_url=aa.base_url, db_url=db.base_url, sources=sources, **kw),
        raise_on_error=raise_on_error,
    )


def enriched(warehouse_url: str) -> dict[tuple[str, str], dict]:
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM postings_enriched"))
        return {(r.source, r.external_id): dict(r._mapping) for r in rows}


def mat_metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key))
    return {k: v.value for k, v in event.materialization.metadata.items()}


def check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    return next(ev.passed for ev in result.get_asset_check_evaluations() if ev.check_name == name)


def test_two_sources_sixteen_states_fill_the_view_and_a_second_run_changes_nothing(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i, state in enumerate(STATES):
        add_aa(aa, i, state)
    add_aa(aa, 100, "Bayern", published=DAY + timedelta(days=1))  # listed, but belongs to another day
    add_db(db, "70001")
    add_db(db, "70002", published=DAY - timedelta(days=3))

    first = run(warehouse_url, aa, db)
    assert first.success
    rows = enriched(warehouse_url)
    assert len(rows) == 17  # 16 Jobsuche postings of DAY + 1 Deutsche Bank posting of DAY
    assert {r["state"] for k, r in rows.items() if k[0] == "arbeitsagentur"} == set(STATES)
    assert all(r["job_description"] and "Ihre Aufgaben" in r["job_description"] for r in rows.values()
               if r["source"] == "arbeitsagentur")
    assert rows[("deutsche_bank", "70001")]["job_description"].startswith("RM 70001")
    assert {str(r["partition_date"])[:10] for r in rows.values()} == {DAY.isoformat()}
    wo_values = {s[0] for s in aa.searches()}
    assert len(wo_values) == 16 and {"Bundesland Hessen", "Bundesland Sachsen"} <= wo_values
    meta = mat_metadata(first, "postings")
    assert (meta["new"], meta["errors"]) == (17, 0)
    # The storing cost is reported per 1,000 rows (issue #13); its size is the bench's business.
    assert all(isinstance(meta[k], float) for k in ("store_ms_per_1000", "store_cpu_ms_per_1000"))
    assert check_passed(first, "fetch_complete")

    details_before = len(aa.detail_calls())
    second = run(warehouse_url, aa, db)
    assert second.success
    assert enriched(warehouse_url).keys() == rows.keys()
    meta2 = mat_metadata(second, "postings")
    assert (meta2["new"], meta2["updated"], meta2["unchanged"]) == (0, 0, 17)
    assert len(aa.detail_calls()) == details_before  # nothing fetched twice
    assert mat_metadata(second, "job_descriptions")["processed"] == 0
    # Coverage describes the whole partition, so a run with nothing to do still plots the day's figure.
    cov = mat_metadata(second, "job_descriptions")
    assert cov["partition_postings"] == 17 and cov["without_description"] == 0
    assert cov["with_description"] + cov["with_short_description"] == 17
    assert cov["description_coverage"] == round(cov["with_description"] / 17, 4) and cov["with_description"] >= 16
    assert isinstance(cov["description_coverage"], float)


def test_paging_dedupe_and_the_v4_shape(warehouse_url: str, db: FakeDeutscheBank) -> None:
    with FakeJobsuche(today=TODAY, search_version="v4") as aa:
        for i in range(230):
            add_aa(aa, i, "Berlin")
        add_aa(aa, 999, "Brandenburg")
        aa.add(make_v6_item(refnr(999), "Doppelt", published=DAY, state="Berlin", city="Berlin", plz="10115"),
               state="Berlin")  # the same refnr found under a second state
        result = run(warehouse_url, aa, db, sources="arbeitsagentur")
        assert result.success
        berlin_pages = [s for s in aa.searches() if s[0] == "Berlin"]
        assert [p[1] for p in berlin_pages] == [1, 2, 3]
        meta = mat_metadata(result, "postings")
        assert meta["new"] == 231 and meta["duplicates_dropped"] == 1
        assert len(enriched(warehouse_url)) == 231


def test_transient_search_errors_are_retried_and_a_dead_state_does_not_stop_the_others(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i, state in enumerate(STATES):
        add_aa(aa, i, state)
    aa.fail_next("/pc/v6/jobs", status=429, retry_after="0", match={"wo": "Bayern"})
    aa.fail_next("/pc/v6/jobs", status=403, match={"wo": "Berlin"})
    aa.fail_next("/pc/v6/jobs", truncated_json=True, match={"wo": "Bremen"})
    aa.fail_next("/pc/v6/jobs", status=500, times=10, match={"wo": "Saarland"})  # exhausts the retries
    result = run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert result.success  # what arrived is saved ...
    rows = enriched(warehouse_url)
    assert {r["state"] for r in rows.values()} == set(STATES) - {"Saarland"}
    assert not check_passed(result, "fetch_complete")  # ... and the partition says it is incomplete
    meta = mat_metadata(result, "postings")
    assert meta["errors"] == 1 and "Saarland" in meta["error_messages"]


def test_all_sources_failing_fails_the_partition(warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank) -> None:
    aa.fail_next("/pc/v6/jobs", status=500, times=1000)
    db.fail_next("/search/", status=503, times=1000)
    result = run(warehouse_url, aa, db, raise_on_error=False)
    assert not result.success
    assert enriched(warehouse_url) == {}


def test_result_window_and_empty_answers(warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank) -> None:
    for i in range(5):
        add_aa(aa, i, "Hamburg")
    aa.total_override = 25_000  # the API claims more than the 10,000 window allows
    result = run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert result.success
    meta = mat_metadata(result, "postings")
    assert meta["new"] == 5 and meta["window_truncated_arbeitsagentur"] > 0
    # States without postings answered without an `ergebnisliste` key; that is not an error.
    assert meta["errors"] == 0 and check_passed(result, "fetch_complete")


def test_description_outcomes_gone_partner_retry_and_two_strikes(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    ok = add_aa(aa, 1, "Berlin")
    gone = make_v6_item(refnr(2), "Weg", published=DAY, state="Berlin", city="Berlin", plz="10115")
    aa.add(gone, state="Berlin", detail=None, detail_status=404)
    partner = make_v6_item(refnr(3), "Partner", published=DAY, state="Berlin", city="Berlin", plz="10115",
                           externe_url="https://www.jobvector.de/job/abc")
    aa.add(partner, state="Berlin", detail=make_detail(partner, "", externeURL="https://www.jobvector.de/job/abc"))
    flaky = add_aa(aa, 4, "Berlin")
    broken = add_aa(aa, 5, "Berlin")
    aa.fail_next(f"/pc/v4/jobdetails/{encode_refnr(refnr(4))}", status=403)
    aa.fail_next(f"/pc/v4/jobdetails/{encode_refnr(refnr(5))}", status=500, times=100)
    db_gone = add_db(db, "70009", html="")

    first = run(warehouse_url, aa, db)
    assert first.success
    rows = enriched(warehouse_url)
    assert rows[("arbeitsagentur", ok["referenznummer"])]["description_status"] == "ok"
    assert rows[("arbeitsagentur", flaky["referenznummer"])]["description_status"] == "ok"
    gone_row = rows[("arbeitsagentur", refnr(2))]
    assert gone_row["invalidated"] and gone_row["invalidated_reason"] == "not_found_at_source"
    assert gone_row["job_description"] is None
    partner_row = rows[("arbeitsagentur", refnr(3))]
    assert partner_row["description_status"] == "external_partner" and partner_row["job_description"] is None
    assert partner_row["partner_url"] == "https://www.jobvector.de/job/abc"
    assert rows[("arbeitsagentur", broken["referenznummer"])]["description_status"] == "failed"
    db_row = rows[("deutsche_bank", db_gone["MatchedObjectId"])]
    assert db_row["invalidated"] and db_row["description_status"] == "not_found"

    second = run(warehouse_url, aa, db, assets=[job_descriptions])
    assert mat_metadata(second, "job_descriptions")["processed"] == 1
    assert enriched(warehouse_url)[("arbeitsagentur", refnr(5))]["description_status"] == "gave_up"
    calls = len(aa.detail_calls())
    third = run(warehouse_url, aa, db, assets=[job_descriptions])
    assert mat_metadata(third, "job_descriptions")["processed"] == 0
    assert len(aa.detail_calls()) == calls


def test_deutsche_bank_postings_missing_from_the_listing_are_invalidated(
    warehouse_url: str, aa: FakeJobsuche
) -> None:
    with FakeDeutscheBank() as db:
        for pid in ("71", "72", "73"):
            add_db(db, pid)
        assert run(warehouse_url, aa, db, sources="deutsche_bank", assets=[postings]).success
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:  # pretend the last listing was three days ago
        conn.execute(sa.text("UPDATE postings SET last_seen_at = last_seen_at - INTERVAL '3 days'")
                     if engine.dialect.name == "postgresql"
                     else sa.text("UPDATE postings SET last_seen_at = datetime(last_seen_at, '-3 days')"))
    with FakeDeutscheBank() as db2:  # "73" is no longer listed
        add_db(db2, "71")
        add_db(db2, "72")
        result = run(warehouse_url, aa, db2, sources="deutsche_bank", assets=[postings])
    rows = enriched(warehouse_url)
    assert rows[("deutsche_bank", "73")]["invalidated_reason"] == "removed_from_source"
    assert not rows[("deutsche_bank", "71")]["invalidated"]
    assert mat_metadata(result, "postings")["stale_invalidated_deutsche_bank"] == 1


def test_partitions_beyond_the_search_window_report_why(warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank) -> None:
    old = TODAY - timedelta(days=150)
    add_db(db, "80001", published=old)
    result = run(warehouse_url, aa, db, assets=[postings], day=old)
    assert result.success and not check_passed(result, "fetch_complete")
    assert "100 days" in mat_metadata(result, "postings")["error_messages"]
    assert len(enriched(warehouse_url)) == 1  # Deutsche Bank still delivered its posting of that day


def test_cli_materialize_against_any_server_speaking_the_formats(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank, tmp_path
) -> None:
    """The issue's acceptance command, run as a user would: env vars + `dagster asset materialize`."""
    import os
    import subprocess
    import sys

    for i, state in enumerate(STATES[:3]):
        add_aa(aa, i, state)
    add_db(db, "70100")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TY_WAREHOUSE_URL": warehouse_url,
        "TY_AA_BASE_URL": aa.base_url,
        "TY_DB_BASE_URL": db.base_url,
        "TY_SOURCES": "arbeitsagentur,deutsche_bank",
    }
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ty_pipeline",
           "--select", "postings,job_descriptions", "--partition", DAY.isoformat()]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = enriched(warehouse_url)
    assert len(rows) == 4 and all(r["job_description"] for r in rows.values())
    before = table_rows(warehouse_url, "postings", "job_descriptions")
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    # Issue #9 "done when": re-materializing the day leaves every row identical, timestamps included.
    assert table_rows(warehouse_url, "postings", "job_descriptions") == before
    assert enriched(warehouse_url).keys() == rows.keys()
    assert all(enriched(warehouse_url)[k]["job_description"] == r["job_description"] for k, r in rows.items())


def test_items_repeated_across_pages_do_not_end_paging_early(warehouse_url: str, aa: FakeJobsuche,
                                                              db: FakeDeutscheBank) -> None:
    for i in range(4):
        add_aa(aa, i, "Bremen")
    aa.duplicate_across_pages = True  # results shift while paging: page 2 repeats the end of page 1
    result = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings],
                 jobsuche_page_size=2)
    assert result.success
    assert len(enriched(warehouse_url)) == 4
    assert mat_metadata(result, "postings")["duplicates_dropped"] == 1


def test_renamed_or_missing_fields_are_read_or_counted_never_crash(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i in range(3):
        add_aa(aa, i, "Berlin")
    aa.renamed_fields = {"stellenangebotsTitel": ""}  # the title vanished from every item
    first = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings])
    assert first.success
    assert {r["title"] for r in enriched(warehouse_url).values()} == {"Projektleiter/in"}  # falls back to the profession
    aa.renamed_fields = {"referenznummer": "refNr"}  # the id key was renamed: unreadable, so not saved
    add_aa(aa, 50, "Berlin")
    second = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings])
    assert second.success
    assert mat_metadata(second, "postings")["malformed_items"] == 4
    assert len(enriched(warehouse_url)) == 3


def test_a_400_inside_the_result_window_fails_that_state_instead_of_ending_it(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    """Issue #9 defect 4: page 2 of 150 results (page*size = 200) is nowhere near the 10,000 window."""
    for i in range(150):
        add_aa(aa, i, "Berlin")
    add_aa(aa, 500, "Hamburg")
    window_error = ('{"timestamp": "2026-10-01T09:02:11.402Z", "logref": "5c1e09f2", "messages": '
                    '[{"code": "EINGABEN_UNVOLLSTAENDIG_ODER_FEHLERHAFT", "path": "page", "detail": "Wert ungültig"}]}')
    aa.fail_next("/pc/v6/jobs", status=400, body=window_error, match={"wo": "Berlin", "page": "2"})
    result = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings])
    assert result.success  # what arrived is saved ...
    assert not check_passed(result, "fetch_complete")  # ... and the partition says Berlin is incomplete
    fetch_check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "fetch_complete")
    assert fetch_check.metadata["reason"].value.startswith(f"1 fetch requests for {DAY} failed (expected 0), in arbeitsagentur")
    assert "| source | error |" in fetch_check.metadata["examples"].value
    assert "| arbeitsagentur |" in fetch_check.metadata["examples"].value and "Berlin page 2" in fetch_check.metadata["examples"].value
    meta = mat_metadata(result, "postings")
    assert meta["new"] == 101 and meta["errors"] == 1
    assert "Berlin page 2" in meta["error_messages"] and "inside the 10,000-result window" in meta["error_messages"]
    assert meta["jobsuche_sweep"] == "skipped: the Jobsuche fetch was incomplete"
    assert meta["per_state_arbeitsagentur"]["Berlin"]["failed"] == 1
    assert "failed" not in meta["per_state_arbeitsagentur"]["Hamburg"]


def test_paging_never_asks_past_the_result_window() -> None:
    from ty_pipeline.fetching.jobsuche import past_result_window

    assert not past_result_window(100, 100) and past_result_window(101, 100)
    assert not past_result_window(2, 100) and not past_result_window(333, 30) and past_result_window(334, 30)


def test_standalone_checks_report_duplicates_totals_and_coverage(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    from ty_pipeline.checks.ingestion import INGESTION_CHECKS

    for i in range(3):
        add_aa(aa, i, "Hamburg")
    aa.fail_next(f"/pc/v4/jobdetails/{encode_refnr(refnr(2))}", status=500, times=100)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [postings, job_descriptions, *INGESTION_CHECKS],
            partition_key=DAY.isoformat(),
            instance=instance,
            resources=resources_for(warehouse_url, aa_url=aa.base_url, db_url=db.base_url, sources="arbeitsagentur"),
        )
        evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert evaluations["no_duplicate_postings"].passed
        assert evaluations["fetch_matches_reported_totals"].passed
        coverage = evaluations["descriptions_complete"]
        assert not coverage.passed  # one of three postings has no final outcome yet
        meta = {k: v.value for k, v in coverage.metadata.items()}
        assert (meta["in_scope"], meta["with_outcome"]) == (3, 2)
        assert meta["pending_posting_ids"] != "none"
        assert meta["reason"] == (f"2 of 3 valid postings of {DAY} have a final description outcome (66.7%), below "
                                  "the threshold of 95%; the next run of `job_descriptions` for the partition "
                                  "fetches the rest")
        assert coverage.description == meta["reason"]
        table = meta["examples"]
        assert "| posting_id | external_id | title | problem |" in table
        assert f"arbeitsagentur:{refnr(2)}" in table and "Projektleiter/in 2 (m/w/d)" in table
        assert "description failed" in table and "Projektleiter/in 1 (m/w/d)" not in table
        assert all(e.partition == DAY.isoformat() for e in evaluations.values())  # per-partition results

        aa.total_override = 500  # the API claims far more than it served
        again = dg.materialize(
            [postings, *INGESTION_CHECKS[:2]], partition_key=DAY.isoformat(), instance=instance,
            resources=resources_for(warehouse_url, aa_url=aa.base_url, db_url=db.base_url, sources="arbeitsagentur"),
        )
        totals = next(e for e in again.get_asset_check_evaluations() if e.check_name == "fetch_matches_reported_totals")
        assert not totals.passed
        reason = totals.metadata["reason"].value
        assert reason.startswith(f"1 of 1 sources of {DAY} fell short") and "arbeitsagentur read 3 of 8000 reported" in reason  # 500 per state
        assert "| source | reported | beyond_window | read |" in totals.metadata["examples"].value
        assert "| arbeitsagentur | 8000 |" in totals.metadata["examples"].value


def test_duplicate_check_names_the_pairs_with_titles_and_ids(tmp_path: Path) -> None:
    """The unique constraint makes duplicates impossible in a real warehouse; the check guards against losing it."""
    from ty_pipeline.checks.ingestion import duplicates_result
    from ty_pipeline.warehouse.schema import postings as postings_table

    bare = sa.MetaData()
    table = postings_table.to_metadata(bare)
    table.constraints = {c for c in table.constraints if not isinstance(c, sa.UniqueConstraint)}
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'dupes.db'}")
    bare.create_all(engine)
    row = {"source": "arbeitsagentur", "external_id": "10000-1-S", "partition_date": DAY, "invalidated": False,
           "first_seen_at": datetime(2026, 11, 1), "last_seen_at": datetime(2026, 11, 1)}
    with engine.begin() as conn:
        conn.execute(table.insert(), [{**row, "posting_id": 1, "title": "Koch (m/w/d)"},
                                      {**row, "posting_id": 2, "title": "Koch (m/w/d)"},
                                      {**row, "posting_id": 3, "external_id": "other", "title": "Bäcker"}])
    assert duplicates_result(engine).passed is False
    meta = {k: v.value for k, v in duplicates_result(engine).metadata.items()}
    assert meta["reason"].startswith("1 (source, external_id) pairs are stored more than once (expected 0)")
    assert "| external_id | title | copies | posting_ids |" in meta["examples"]
    assert "| arbeitsagentur:10000-1-S | Koch (m/w/d) | 2 | 1, 2 |" in meta["examples"]
