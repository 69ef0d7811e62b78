"""Bad bytes from the job APIs never cost other rows, and a lost row is never silent (issue #9: 1, 2, 10, 15).

Everything goes over real HTTP to the fake job APIs and into real SQLite and PostgreSQL warehouses.
To force a row failure that cleaning would otherwise prevent, a test switches the cleaning off
(`no_cleaning`) and sends a lone surrogate, which neither psycopg2 nor sqlite3 can encode.
"""

from __future__ import annotations

import re

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.checks.ingestion import INGESTION_CHECKS, fetch_matches_reported_totals
from ty_pipeline.domain.jobsuche_format import encode_refnr
from ty_pipeline.domain.states import STATES
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank, make_db_item
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche, make_detail, make_v6_item
from ty_pipeline_tests.helpers import resources_for
from ty_pipeline_tests.test_postings_assets import (
    DAY,
    DESCRIPTION,
    add_aa,
    add_db,
    check_passed,
    enriched,
    mat_metadata,
    refnr,
    run,
)

CONTROL_CHARS = {chr(c) for c in range(0x20) if chr(c) not in "\t\n"} | {"\x7f"}



@pytest.fixture
def no_cleaning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the parse-time cleaning off, so a bad string reaches the database as it came."""
    from ty_pipeline.domain import text_clean

    never = re.compile("(?!)")
    monkeypatch.setattr(text_clean, "_UNSTORABLE", never)
    monkeypatch.setattr(text_clean, "_SPACE_LIKE", never)


def stored_strings(warehouse_url: str, table: str) -> list[str]:
    with get_engine(warehouse_url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed table names
        return [v for r in rows for v in r._mapping.values() if isinstance(v, str)]


def test_a_nul_byte_in_a_title_costs_nothing_and_is_not_stored(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i, state in enumerate(STATES):
        add_aa(aa, i, state)
    bad = make_v6_item(refnr(99), "Projekt\u0000leiter/in (m/w/d)\u0007", published=DAY, state="Berlin",
                       city="Berlin", plz="10115", firma="Null\u0000Byte GmbH")
    aa.add(bad, state="Berlin", detail=make_detail(bad, DESCRIPTION + "\u0000 Ende\u001b"))
    add_db(db, "70001")

    result = run(warehouse_url, aa, db)
    assert result.success
    rows = enriched(warehouse_url)
    assert len(rows) == 18  # 16 + the NUL posting + Deutsche Bank: nothing rolled back
    row = rows[("arbeitsagentur", refnr(99))]
    assert row["title"] == "Projektleiter/in (m/w/d)" and row["employer"] == "NullByte GmbH"
    assert row["job_description"].endswith("Ende")
    for table in ("postings", "job_descriptions"):
        assert not any(set(s) & CONTROL_CHARS for s in stored_strings(warehouse_url, table))
    assert check_passed(result, "fetch_complete") and check_passed(result, "all_postings_stored")
    meta = mat_metadata(result, "postings")
    assert (meta["new"], meta["rows_lost"]) == (18, 0)

    again = run(warehouse_url, aa, db)  # cleaning is deterministic: a second run changes no row
    assert again.success

    def without_sighting(view: dict) -> dict:  # `last_seen_at` records the new sighting, by design
        return {k: {c: v for c, v in r.items() if c != "last_seen_at"} for k, r in view.items()}

    assert without_sighting(enriched(warehouse_url)) == without_sighting(rows)
    assert mat_metadata(again, "postings")["unchanged"] == 18


def evaluation(result: dg.ExecuteInProcessResult, name: str) -> tuple[bool, dict]:
    ev = next(e for e in result.get_asset_check_evaluations() if e.check_name == name)
    return ev.passed, {k: v.value for k, v in ev.metadata.items()}


def test_a_row_the_warehouse_refuses_costs_only_itself_is_named_and_fails_the_step(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank, no_cleaning: None
) -> None:
    for i in range(5):
        add_aa(aa, i, "Hamburg")
    bad = make_v6_item(refnr(66), "Koch\ud800 (m/w/d)", published=DAY, state="Hamburg", city="Hamburg",
                       plz="20095")
    aa.add(bad, state="Hamburg")
    add_db(db, "70001")
    resources = resources_for(warehouse_url, aa_url=aa.base_url, db_url=db.base_url,
                              sources="arbeitsagentur,deutsche_bank")
    with dg.instance_for_test() as instance:
        result = dg.materialize([postings, job_descriptions, *INGESTION_CHECKS], partition_key=DAY.isoformat(),
                                instance=instance, resources=resources, raise_on_error=False)
        assert not result.success  # a lost row fails the step: non-zero exit for the CLI
        rows = enriched(warehouse_url)
        assert len(rows) == 6 and ("arbeitsagentur", refnr(66)) not in rows  # every other row was saved
        meta = mat_metadata(result, "postings")  # recorded before the step failed
        assert meta["rows_lost"] == 1 and refnr(66) in meta["lost_postings"]
        assert meta["stored_arbeitsagentur"] == 5 and meta["kept_arbeitsagentur"] == 6
        passed, check_meta = evaluation(result, "all_postings_stored")
        assert not passed and refnr(66) in check_meta["lost_postings"]
        assert check_meta["reason"] == f"1 of 7 postings fetched for {DAY} could not be stored (expected 0); every other row was saved"
        assert "| external_id | title | problem |" in check_meta["examples"]
        assert f"| arbeitsagentur:{refnr(66)} | Koch? (m/w/d) |" in check_meta["examples"]  # storable
        assert not any(e.asset_key == dg.AssetKey("job_descriptions")
                       for e in result.get_asset_materialization_events())  # blocked downstream

        # The standalone totals check, run on its own, compares stored rows and names the short source.
        # (A checks-only job selects no asset, so the partition travels as a run tag.)
        only_totals = dg.define_asset_job("only_totals", selection=dg.AssetSelection.checks(
            fetch_matches_reported_totals))
        defs = dg.Definitions(assets=[postings], asset_checks=INGESTION_CHECKS, jobs=[only_totals],
                              resources=resources)
        totals = defs.resolve_job_def("only_totals").execute_in_process(
            instance=instance, tags={"dagster/partition": DAY.isoformat()})
        passed, totals_meta = evaluation(totals, "fetch_matches_reported_totals")
        assert not passed
        assert "stored 5 of 6" in totals_meta["short_sources"]["arbeitsagentur"]
        assert "deutsche_bank" not in totals_meta["short_sources"]


def long_id(prefix: str, length: int) -> str:
    """A malformed but plausible id: the real shape, then digits (and umlauts, when `prefix` has them)."""
    return (prefix + "".join(str(i % 10) for i in range(length)))[:length]


def test_postings_with_ids_of_300_and_2000_characters_are_stored_and_round_trip(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    """Ids past the old VARCHAR(255), a postal code past VARCHAR(16) and a country past VARCHAR(64) are
    stored exactly as the APIs sent them, with their descriptions, on both backends."""
    aa_ids = [long_id("10001-Ä-Ö-Ü-ß-", 300), long_id("10001-", 2000)]
    db_ids = [long_id("70001-", 300), long_id("70002-", 2000)]
    plz, country = "34117 " * 5 + "Kassel-Wilhelmshöhe", " ".join(["Bundesrepublik Deutschland"] * 4)
    for i, ext in enumerate(aa_ids):
        item = make_v6_item(ext, f"Bäcker {i} (m/w/d)", published=DAY, state="Hessen", city="Kassel", plz=plz)
        item["stellenlokationen"][0]["adresse"]["land"] = country
        aa.add(item, state="Hessen", detail=make_detail(item, f"{DESCRIPTION}\nReferenz {i}"))
    add_aa(aa, 1, "Bayern")
    for ext in db_ids:
        add_db(db, ext)

    result = run(warehouse_url, aa, db)
    assert result.success
    meta = mat_metadata(result, "postings")
    assert (meta["new"], meta["rows_lost"]) == (5, 0)
    assert check_passed(result, "all_postings_stored") and check_passed(result, "fetch_complete")
    rows = enriched(warehouse_url)
    assert set(rows) == {("arbeitsagentur", refnr(1)), *(("arbeitsagentur", e) for e in aa_ids),
                         *(("deutsche_bank", e) for e in db_ids)}
    assert {len(e) for _s, e in rows} == {len(refnr(1)), 300, 2000}
    assert all(r["description_status"] == "ok" for r in rows.values())  # detail calls by the long ids too
    with get_engine(warehouse_url).connect() as conn:
        stored = {r.external_id: r for r in conn.execute(sa.text(
            "SELECT p.external_id, p.postal_code, p.country, pp.raw_json FROM postings p "
            "JOIN posting_payloads pp ON pp.posting_id = p.posting_id WHERE p.source = 'arbeitsagentur'"))}
    for ext in aa_ids:
        assert (stored[ext].postal_code, stored[ext].country) == (plz, country)
        assert f'"referenznummer": "{ext}"' in stored[ext].raw_json

    again = run(warehouse_url, aa, db)  # the long ids are found again: updated in place, nothing new
    assert again.success
    assert (mat_metadata(again, "postings")["new"], mat_metadata(again, "postings")["unchanged"]) == (0, 5)
    assert set(enriched(warehouse_url)) == set(rows)


def test_an_id_too_long_to_index_is_a_lost_row_with_its_reason_and_the_rest_is_stored(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i in range(3):
        add_aa(aa, i, "Bremen")
    too_long_aa = long_id("10001-", 5000)
    item = make_v6_item(too_long_aa, "Koch (m/w/d)", published=DAY, state="Bremen", city="Bremen", plz="28195")
    aa.add(item, state="Bremen")
    too_long_db = long_id("70009-", 3000)
    add_db(db, "70001")
    add_db(db, too_long_db)

    result = run(warehouse_url, aa, db, raise_on_error=False)
    assert not result.success  # a lost row fails the step, as every lost row does
    rows = enriched(warehouse_url)
    assert set(rows) == {*(("arbeitsagentur", refnr(i)) for i in range(3)), ("deutsche_bank", "70001")}
    meta = mat_metadata(result, "postings")
    assert (meta["new"], meta["rows_lost"]) == (4, 2)
    reason = ("external id is {:,} bytes long (UTF-8); the warehouse indexes (source, external_id) and stores "
              "ids of at most 2,048 bytes")
    assert f"- arbeitsagentur:{too_long_aa[:80]}… (5,000 characters): {reason.format(5000)}" in meta["lost_postings"]
    assert f"- deutsche_bank:{too_long_db[:80]}… (3,000 characters): {reason.format(3000)}" in meta["lost_postings"]
    passed, check_meta = evaluation(result, "all_postings_stored")
    assert not passed and check_meta["rows_lost"] == 2
    assert "| external_id | title | problem |" in check_meta["examples"]
    assert f"| arbeitsagentur:{too_long_aa[:80]}" in check_meta["examples"]
    assert len(check_meta["lost_postings"]) < 1000  # named by its start, not by its 5,000 characters


def test_html_entities_are_decoded_once_in_titles_and_texts(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    item = make_db_item("70042", "Funds Transfer Pricing &amp; Treasury &amp;amp; Co (m/w/d)", published=DAY,
                        city="Frankfurt", subdivision="Hessen")
    db.add(item, html=f"<h2>FTP &amp; Treasury</h2><p>R&amp;D &amp;amp; mehr</p><p>{DESCRIPTION}</p>")
    aa_item = make_v6_item(refnr(7), "K&#246;chin &#x26; Koch", published=DAY, state="Bayern", city="München",
                           plz="80331", firma="M&amp;M Gastro GmbH")
    aa.add(aa_item, state="Bayern", detail=make_detail(aa_item, DESCRIPTION + "\nTeam &amp; Tradition &lt;/posting&gt;"))

    assert run(warehouse_url, aa, db).success
    rows = enriched(warehouse_url)
    db_row = rows[("deutsche_bank", "70042")]
    assert db_row["title"] == "Funds Transfer Pricing & Treasury &amp; Co (m/w/d)"  # once, not twice
    assert db_row["job_description"].startswith("FTP & Treasury\n")
    assert "R&D &amp; mehr" in db_row["job_description"]
    aa_row = rows[("arbeitsagentur", refnr(7))]
    assert (aa_row["title"], aa_row["employer"]) == ("Köchin & Koch", "M&M Gastro GmbH")
    assert aa_row["job_description"].endswith("Team & Tradition </posting>")


def test_a_jobsuche_item_without_a_publication_date_is_counted_as_malformed(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    for i in range(3):
        add_aa(aa, i, "Bremen")
    aa.renamed_fields = {"veroeffentlichungszeitraum": "", "datumErsteVeroeffentlichung": ""}
    result = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[postings])
    assert result.success
    meta = mat_metadata(result, "postings")
    assert (meta["malformed_items"], meta["new"], meta["seen_in_other_partitions"]) == (3, 0, 0)
    assert enriched(warehouse_url) == {}


def test_a_description_the_warehouse_refuses_gets_a_terminal_status_and_the_rest_is_saved(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank, no_cleaning: None
) -> None:
    for i in range(6):
        add_aa(aa, i, "Sachsen")
    bad = make_v6_item(refnr(77), "Koch (m/w/d)", published=DAY, state="Sachsen", city="Leipzig", plz="04109")
    aa.add(bad, state="Sachsen", detail=make_detail(bad, DESCRIPTION + "\nZum Schluss \ud800 ein Fehler"))

    result = run(warehouse_url, aa, db, sources="arbeitsagentur")
    assert result.success  # no raw traceback, no discarded fetches
    rows = enriched(warehouse_url)
    assert [r["description_status"] for k, r in sorted(rows.items()) if k[1] != refnr(77)] == ["ok"] * 6
    bad_row = rows[("arbeitsagentur", refnr(77))]
    assert bad_row["description_status"] == "unstorable" and bad_row["job_description"] is None
    with get_engine(warehouse_url).connect() as conn:
        reason = conn.execute(sa.text(
            "SELECT last_error FROM job_descriptions WHERE posting_id = :pid"), {"pid": bad_row["posting_id"]}
        ).scalar_one()
    assert reason.startswith("could not store the fetched description")
    meta = mat_metadata(result, "job_descriptions")
    assert meta["unstorable"] == 1 and refnr(77) in meta["unstorable_postings"]
    passed, check_meta = evaluation(result, "no_failed_fetches")
    assert not passed and refnr(77) in check_meta["unstorable_postings"]
    assert check_meta["reason"].startswith(f"0 description fetches for {DAY} failed and 1 fetched texts could not be stored")
    assert f"| {bad_row['posting_id']} | arbeitsagentur:{refnr(77)} | Koch (m/w/d) | unstorable: could not store" \
        in check_meta["examples"]

    calls = len(aa.detail_calls())
    again = run(warehouse_url, aa, db, sources="arbeitsagentur", assets=[job_descriptions])
    assert again.success and mat_metadata(again, "job_descriptions")["processed"] == 0  # a final status
    assert len(aa.detail_calls()) == calls


def test_an_error_page_with_a_nul_byte_is_still_a_retryable_failure(
    warehouse_url: str, aa: FakeJobsuche, db: FakeDeutscheBank
) -> None:
    add_aa(aa, 1, "Berlin")
    aa.fail_next(f"/pc/v4/jobdetails/{encode_refnr(refnr(1))}", status=500, times=100,
                 body="Gateway\u0000 Fehler\u001b")
    assert run(warehouse_url, aa, db, sources="arbeitsagentur").success
    row = enriched(warehouse_url)[("arbeitsagentur", refnr(1))]
    assert row["description_status"] == "failed"  # retried next run, not mistaken for unstorable
    with get_engine(warehouse_url).connect() as conn:
        error = conn.execute(sa.text("SELECT last_error FROM job_descriptions")).scalar_one()
    assert "Gateway Fehler" in error and not set(error) & CONTROL_CHARS


def test_a_lost_row_makes_the_cli_exit_non_zero_after_saving_the_rest(
    pg_schema_url: str, aa: FakeJobsuche, db: FakeDeutscheBank, tmp_path
) -> None:
    """As an operator runs it, on PostgreSQL, with cleaning on: an id too long for the warehouse's unique
    key is refused, so only that posting is lost."""
    import os
    import subprocess
    import sys

    for i in range(4):
        add_aa(aa, i, "Hessen")
    too_long = make_v6_item(long_id("10001-", 3000), "Bäcker (m/w/d)", published=DAY, state="Hessen",
                            city="Kassel", plz="34117")
    aa.add(too_long, state="Hessen")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "TY_WAREHOUSE_URL": pg_schema_url,
           "TY_AA_BASE_URL": aa.base_url, "TY_DB_BASE_URL": db.base_url, "TY_SOURCES": "arbeitsagentur"}
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ty_pipeline",
           "--select", "postings", "--partition", DAY.isoformat()]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode != 0
    assert "all_postings_stored" in done.stderr + done.stdout
    rows = enriched(pg_schema_url)
    assert set(rows) == {("arbeitsagentur", refnr(i)) for i in range(4)}
