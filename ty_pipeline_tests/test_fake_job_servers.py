"""Tests of the fake Jobsuche and Deutsche Bank servers themselves, and of the shipped sample files.

Why: the pipeline tests trust these fakes to behave like the real APIs (docs/wire_formats.md §1, §2). If a
fake drifted (say the no-match v6 answer gained an empty `ergebnisliste`), pipeline tests would pass
against a world that does not exist. These tests talk plain `requests`, not the production client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank, make_db_item
from ty_pipeline_tests.fakes.jobsuche_server import (
    ENUM_STATES,
    FakeJobsuche,
    encode_refnr,
    make_detail,
    make_v6_item,
)

TODAY = date(2026, 11, 21)
HEADERS = {"X-API-Key": "jobboerse-jobsuche", "User-Agent": "ty-pipeline-tests/1.0", "Accept": "application/json"}
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"


def _item(n: int, *, state: str = "Bayern", city: str = "München", plz: str = "80331", days_ago: int = 1,
          **kw: Any) -> dict[str, Any]:
    return make_v6_item(f"10001-10099{n:05d}-S", f"Testtitel {n} (m/w/d)", published=TODAY - timedelta(days=days_ago),
                        state=state, city=city, plz=plz, hauptberuf="Koch/Köchin", **kw)


@pytest.fixture(scope="module")
def _aa_server() -> Iterator[FakeJobsuche]:
    with FakeJobsuche(today=TODAY) as fake:
        yield fake


@pytest.fixture(scope="module")
def _db_server() -> Iterator[FakeDeutscheBank]:
    with FakeDeutscheBank() as fake:
        yield fake


@pytest.fixture
def aa(_aa_server: FakeJobsuche) -> FakeJobsuche:
    """One server per module (stopping one costs ~0.5 s), wiped before every test."""
    _aa_server.reset()
    _aa_server.search_version = "v6"
    return _aa_server


@pytest.fixture
def db(_db_server: FakeDeutscheBank) -> FakeDeutscheBank:
    _db_server.reset()
    return _db_server


def search(fake: FakeJobsuche, path: str = "/pc/v6/jobs", headers: dict[str, str] | None = None,
           **params: Any) -> requests.Response:
    return requests.get(f"{fake.base_url}{path}", params=params, headers=headers or HEADERS, timeout=5)


def refnrs(resp: requests.Response) -> list[str]:
    return [i["referenznummer"] for i in resp.json().get("ergebnisliste", [])]


# ------------------------------------------------------------------------------------------------
# Jobsuche search
# ------------------------------------------------------------------------------------------------


def test_paging_is_one_based_ordered_newest_first_and_reports_the_total(aa: FakeJobsuche) -> None:
    for n in range(7):
        aa.add(_item(n, days_ago=1 + n % 3), state="Bayern")
    pages = [search(aa, wo="Bayern", page=p, size=3) for p in (1, 2, 3)]
    assert [r.status_code for r in pages] == [200, 200, 200]
    assert [len(refnrs(r)) for r in pages] == [3, 3, 1]
    assert {r.json()["maxErgebnisse"] for r in pages} == {7}
    assert [(r.json()["page"], r.json()["size"]) for r in pages] == [(1, 3), (2, 3), (3, 3)]
    served = [i for r in pages for i in r.json()["ergebnisliste"]]
    keys = [(-date.fromisoformat(i["veroeffentlichungszeitraum"]["von"]).toordinal(), i["referenznummer"])
            for i in served]
    assert keys == sorted(keys) and len({k[1] for k in keys}) == 7
    assert refnrs(search(aa, wo="Bayern", page=2, size=3)) == refnrs(pages[1])  # deterministic
    facets = pages[0].json()["facetten"]
    assert facets["arbeitsort"] == {"counts": {"München": 7}, "maxCount": 7}
    assert facets["arbeitszeit"]["counts"]["vz"] == 7
    beyond = search(aa, wo="Bayern", page=4, size=3).json()
    assert "ergebnisliste" not in beyond and beyond["maxErgebnisse"] == 7


def test_no_match_answer_has_neither_list_nor_facets(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    resp = search(aa, wo="Bundesland Bremen", page=1, size=100)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"maxErgebnisse", "page", "size", "woOutput"}
    assert body["maxErgebnisse"] == 0 and body["woOutput"]["bereinigterOrt"] == "Bremen"


def test_size_over_100_is_the_gateway_400_body(aa: FakeJobsuche) -> None:
    resp = search(aa, wo="Bayern", page=1, size=101)
    assert resp.status_code == 400
    body = resp.json()
    assert set(body) == {"timestamp", "logref", "messages"}
    assert body["messages"][0]["code"] == "EINGABEN_UNVOLLSTAENDIG_ODER_FEHLERHAFT"
    assert body["messages"][0]["path"] == "size"
    assert search(aa, wo="Bayern", page=1, size=100).status_code == 200


def test_result_window_and_invalid_pages_answer_400_on_path_page(aa: FakeJobsuche) -> None:
    assert search(aa, wo="Bayern", page=100, size=100).status_code == 200
    for page in (101, 0, -1, "zwei"):
        resp = search(aa, wo="Bayern", page=page, size=100)
        assert resp.status_code == 400, page
        assert resp.json()["messages"][0]["path"] == "page"


def test_veroeffentlichtseit_keeps_postings_published_in_the_last_n_days(aa: FakeJobsuche) -> None:
    aa.add(_item(1, days_ago=1), state="Bayern")
    aa.add(_item(2, days_ago=3), state="Bayern")
    aa.add(_item(3, days_ago=11), state="Bayern")
    assert len(refnrs(search(aa, wo="Bayern", veroeffentlichtseit=1))) == 1
    assert len(refnrs(search(aa, wo="Bayern", veroeffentlichtseit=3))) == 2
    assert len(refnrs(search(aa, wo="Bayern"))) == 3
    assert search(aa, wo="Bayern", veroeffentlichtseit=3).json()["maxErgebnisse"] == 2


def test_angebotsart_is_accepted_and_filters_the_offer_type(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    apprenticeship = _item(2)
    apprenticeship["stellenangebotsart"] = "AUSBILDUNG"
    aa.add(apprenticeship, state="Bayern")
    assert refnrs(search(aa, wo="Bayern", angebotsart=1)) == ["10001-1009900001-S"]
    assert refnrs(search(aa, wo="Bayern", angebotsart=4)) == ["10001-1009900002-S"]


def test_api_key_and_user_agent_are_required(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    no_key = {k: v for k, v in HEADERS.items() if k != "X-API-Key"}
    assert search(aa, headers=no_key, wo="Bayern").status_code == 403
    assert search(aa, headers={**HEADERS, "X-API-Key": "falsch"}, wo="Bayern").status_code == 403
    assert search(aa, headers={**HEADERS, "User-Agent": ""}, wo="Bayern").status_code == 403
    assert search(aa, headers={**HEADERS, "x-api-key": "jobboerse-jobsuche"}, wo="Bayern").status_code == 200


def test_plain_hessen_and_sachsen_hit_villages_not_the_states(aa: FakeJobsuche) -> None:
    aa.add(_item(1, state="Hessen", city="Kassel", plz="34117"), state="Hessen")
    aa.add(_item(2, state="Sachsen", city="Leipzig", plz="04109"), state="Sachsen")
    aa.add(_item(3, state="Sachsen-Anhalt", city="Osterwieck", plz="38835"), state="Sachsen-Anhalt")
    aa.add(_item(4, state="Bayern", city="Sachsen b.Ansbach", plz="91623"), state="Bayern")
    hessen_village = search(aa, wo="Hessen")
    assert refnrs(hessen_village) == ["10001-1009900003-S"]
    assert "Osterwieck" in hessen_village.json()["woOutput"]["bereinigterOrt"]
    assert refnrs(search(aa, wo="Bundesland Hessen")) == ["10001-1009900001-S"]
    assert refnrs(search(aa, wo="Sachsen")) == ["10001-1009900004-S"]
    assert refnrs(search(aa, wo="Bundesland Sachsen")) == ["10001-1009900002-S"]
    assert refnrs(search(aa, wo="Sachsen-Anhalt")) == ["10001-1009900003-S"]
    assert sorted(refnrs(search(aa, wo="Bayern"))) == ["10001-1009900004-S"]
    assert len(refnrs(search(aa, wo="Deutschland"))) == 4
    assert search(aa, wo="Baden-Wuerttemberg").json()["woOutput"]["suchmodus"] == "UNGUELTIG"


def test_a_refnr_added_under_two_states_is_found_by_both(aa: FakeJobsuche) -> None:
    item = _item(1, state="Berlin", city="Berlin", plz="10117")
    aa.add(item, state="Berlin")
    aa.add(item, state="Brandenburg")
    assert refnrs(search(aa, wo="Berlin")) == refnrs(search(aa, wo="Brandenburg")) == ["10001-1009900001-S"]
    assert len(refnrs(search(aa))) == 1


def test_v4_mode_serves_legacy_names_and_retires_v6(aa: FakeJobsuche) -> None:
    aa.add(_item(1, state="Baden-Württemberg", city="Stuttgart", plz="70173",
                 externe_url="https://www.jobvector.de/job/x-1/"), state="Baden-Württemberg")
    assert search(aa, "/pc/v4/jobs", wo="Baden-Württemberg").status_code == 404
    aa.search_version = "v4"
    assert search(aa, "/pc/v6/jobs", wo="Baden-Württemberg").status_code == 404
    resp = search(aa, "/pc/v4/jobs", wo="Baden-Württemberg")
    assert resp.status_code == 200
    body = resp.json()
    assert "ergebnisliste" not in body and body["maxErgebnisse"] == 1
    (item,) = body["stellenangebote"]
    assert item["refnr"] == "10001-1009900001-S" and item["titel"] == "Testtitel 1 (m/w/d)"
    assert item["beruf"] == "Koch/Köchin" and item["arbeitgeber"]
    assert item["arbeitsort"]["region"] == "Baden-Württemberg" and item["arbeitsort"]["land"] == "Deutschland"
    assert item["arbeitsort"]["ort"] == "Stuttgart" and set(item["arbeitsort"]["koordinaten"]) == {"lat", "lon"}
    assert item["aktuelleVeroeffentlichungsdatum"] == (TODAY - timedelta(days=1)).isoformat()
    assert item["externeUrl"] == "https://www.jobvector.de/job/x-1/"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", item["modifikationsTimestamp"])
    assert not {"referenznummer", "stellenangebotsTitel", "stellenlokationen", "externeURL"} & set(item)


def test_total_override_changes_only_the_reported_total(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    aa.add(_item(2), state="Bayern")
    aa.total_override = 12_345
    body = search(aa, wo="Bayern", size=100).json()
    assert body["maxErgebnisse"] == 12_345 and len(body["ergebnisliste"]) == 2


def test_duplicate_across_pages_repeats_one_item_but_serves_all(aa: FakeJobsuche) -> None:
    for n in range(5):
        aa.add(_item(n), state="Bayern")
    aa.duplicate_across_pages = True
    pages = [refnrs(search(aa, wo="Bayern", page=p, size=2)) for p in (1, 2, 3)]
    assert pages[1][0] == pages[0][-1]
    served = [r for page in pages for r in page]
    assert len(served) == 6 and len(set(served)) == 5


def test_renamed_fields_rename_or_drop_keys_of_served_items(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    aa.renamed_fields = {"stellenangebotsTitel": "", "hauptberuf": "hauptBeruf"}
    (item,) = search(aa, wo="Bayern").json()["ergebnisliste"]
    assert "stellenangebotsTitel" not in item and "hauptberuf" not in item
    assert item["hauptBeruf"] == "Koch/Köchin"


def test_query_log_records_every_search_in_order(aa: FakeJobsuche) -> None:
    search(aa, wo="Bundesland Hessen", page=1, size=100, veroeffentlichtseit=2)
    search(aa, wo="Bayern", page=2, size=50)
    search(aa, "/pc/v4/jobs", wo="Bayern", page=1, size=10)
    assert aa.searches() == [("Bundesland Hessen", 1, 100, 2), ("Bayern", 2, 50, None), ("Bayern", 1, 10, None)]


# ------------------------------------------------------------------------------------------------
# Jobsuche details
# ------------------------------------------------------------------------------------------------


def detail(fake: FakeJobsuche, segment: str) -> requests.Response:
    return requests.get(f"{fake.base_url}/pc/v4/jobdetails/{segment}", headers=HEADERS, timeout=5)


def test_detail_is_addressed_by_base64_with_or_without_padding(aa: FakeJobsuche) -> None:
    refnr = "10001-1002716922-AB"  # 19 bytes: base64 needs '=' padding
    item = make_v6_item(refnr, "Koch (m/w/d)", published=TODAY, state="Hamburg", city="Hamburg", plz="20095")
    aa.add(item, state="Hamburg", detail=make_detail(item, "Wir suchen einen Koch. " * 20))
    padded = encode_refnr(refnr, padding="keep")
    assert padded.endswith("=")
    for segment in (padded, encode_refnr(refnr), encode_refnr(refnr, padding="escaped")):
        resp = detail(aa, segment)
        assert resp.status_code == 200, segment
        assert resp.json()["referenznummer"] == refnr
        assert resp.json()["stellenangebotsBeschreibung"].startswith("Wir suchen")
    raw = detail(aa, refnr)
    assert raw.status_code == 404
    assert raw.json()["messages"] == [{"code": "STELLENANGEBOT_NICHT_GEFUNDEN"}]
    assert detail(aa, encode_refnr("10001-0000000000-S")).status_code == 404
    assert aa.detail_calls() == [refnr, refnr, refnr, refnr, "10001-0000000000-S"]


def test_detail_status_makes_a_listed_posting_gone(aa: FakeJobsuche) -> None:
    item = _item(1)
    aa.add(item, state="Bayern", detail_status=404)
    assert refnrs(search(aa, wo="Bayern")) == ["10001-1009900001-S"]
    resp = detail(aa, encode_refnr("10001-1009900001-S"))
    assert resp.status_code == 404 and resp.json()["messages"][0]["code"] == "STELLENANGEBOT_NICHT_GEFUNDEN"


def test_detail_without_a_record_gets_a_generated_v4_detail(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    body = detail(aa, encode_refnr("10001-1009900001-S")).json()
    assert body["referenznummer"] == "10001-1009900001-S"
    assert len(body["stellenangebotsBeschreibung"]) > 300
    assert body["stellenlokationen"][0]["adresse"]["region"] == "BAYERN"
    assert "titel" not in body and "refnr" not in body  # detail names, not v4-search names


def test_make_v6_item_uses_v6_enums_and_realistic_fields() -> None:
    item = make_v6_item("10001-1-S", "Elektroniker (m/w/d)", published=date(2026, 11, 18), state="Thüringen",
                        city="Erfurt", plz="99084", hauptberuf="Elektroniker/in", first_published=date(2026, 10, 1))
    address = item["stellenlokationen"][0]["adresse"]
    assert (address["region"], address["land"]) == ("THUERINGEN", "DEUTSCHLAND")
    assert ENUM_STATES["NORDRHEIN_WESTFALEN"] == "Nordrhein-Westfalen"
    assert item["veroeffentlichungszeitraum"] == {"von": "2026-11-18"}
    assert item["datumErsteVeroeffentlichung"] == "2026-10-01"
    assert item["alleBerufe"] == ["Elektroniker/in"] and "externeURL" not in item
    with pytest.raises(ValueError):
        make_v6_item("x", "y", published=TODAY, state="Thueringen", city="Erfurt", plz="99084")


# ------------------------------------------------------------------------------------------------
# Fault queue
# ------------------------------------------------------------------------------------------------


def test_faults_are_consumed_in_order_and_only_by_matching_requests(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    aa.fail_next("/pc/v6/jobs", status=429, retry_after="2", times=2)
    aa.fail_next("/pc/v6/jobs", status=503)
    aa.fail_next("/pc/v4/jobdetails/", status=500)
    first = search(aa, wo="Bayern")
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert search(aa, wo="Bayern").status_code == 429
    assert search(aa, wo="Bayern").status_code == 503
    assert search(aa, wo="Bayern").status_code == 200
    assert aa.faults.pending() == 1
    assert detail(aa, encode_refnr("10001-1009900001-S")).status_code == 500
    assert detail(aa, encode_refnr("10001-1009900001-S")).status_code == 200
    assert aa.faults.pending() == 0


def test_fault_match_selects_requests_by_query_parameter(aa: FakeJobsuche) -> None:
    aa.fail_next("/pc/v6/jobs", status=500, match={"page": 2})
    assert search(aa, wo="Bayern", page=1).status_code == 200
    assert search(aa, wo="Bayern", page=2).status_code == 500
    assert search(aa, wo="Bayern", page=2).status_code == 200


def test_403_fault_is_the_waf_html_page(aa: FakeJobsuche) -> None:
    aa.fail_next("/pc/v6/jobs", status=403)
    resp = search(aa, wo="Bayern")
    assert resp.status_code == 403 and resp.headers["Content-Type"].startswith("text/html")


def test_truncated_json_is_a_prefix_of_the_real_answer_with_status_200(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    full = search(aa, wo="Bayern").text
    aa.fail_next("/pc/v6/jobs", truncated_json=True)
    cut = search(aa, wo="Bayern")
    assert cut.status_code == 200 and 0 < len(cut.text) < len(full) and full.startswith(cut.text)
    with pytest.raises(ValueError):
        json.loads(cut.text)


def test_messages_only_body_with_status_200_for_a_detail(aa: FakeJobsuche) -> None:
    aa.add(_item(1), state="Bayern")
    aa.fail_next("/pc/v4/jobdetails/", body='{"messages":[{"code":"STELLENANGEBOT_NICHT_GEFUNDEN"}]}')
    resp = detail(aa, encode_refnr("10001-1009900001-S"))
    assert resp.status_code == 200 and resp.json() == {"messages": [{"code": "STELLENANGEBOT_NICHT_GEFUNDEN"}]}


def test_drop_closes_the_connection_without_an_answer(aa: FakeJobsuche) -> None:
    aa.fail_next("/pc/v6/jobs", drop=True)
    with pytest.raises(requests.ConnectionError):
        search(aa, wo="Bayern")
    assert search(aa, wo="Bayern").status_code == 200
    assert len(aa.searches()) == 2


def test_a_fault_needs_something_to_do(aa: FakeJobsuche) -> None:
    with pytest.raises(ValueError):
        aa.fail_next("/pc/v6/jobs")


# ------------------------------------------------------------------------------------------------
# Deutsche Bank
# ------------------------------------------------------------------------------------------------


def db_payload(first: int = 1, count: int = 100, *, country: Any = ("46",),
               descriptors: list[str] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"FirstItem": first, "CountItem": count,
                              "Sort": [{"Criterion": "PublicationStartDate", "Direction": "DESC"}]}
    if descriptors is not None:
        params["MatchedObjectDescriptor"] = descriptors
    criteria = [] if country is None else [
        {"CriterionName": "PositionLocation.Country", "CriterionValue": list(country) if isinstance(country, tuple)
         else country}]
    return {"LanguageCode": "en", "SearchParameters": params, "SearchCriteria": criteria}


def db_post(fake: FakeDeutscheBank, payload: dict[str, Any]) -> requests.Response:
    return requests.post(f"{fake.base_url}/search/", json=payload, timeout=5)


def _fill_db(fake: FakeDeutscheBank) -> None:
    for n in range(5):
        fake.add(make_db_item(f"7110{n}", f"Analyst {n} (f/m/x)", published=date(2026, 11, 16 + n),
                              city="Frankfurt", subdivision="Hessen"), html=f"<p>Ad {n}</p>")
    fake.add(make_db_item("70900", "Analyst Mumbai", published=date(2026, 11, 21), city="Mumbai", subdivision=None,
                          country="Indien", workday_slug="Mumbai-Nirlon-Knowledge-Park"), html="<p>IN</p>")


def test_db_post_and_get_forms_answer_the_same(db: FakeDeutscheBank) -> None:
    _fill_db(db)
    payload = db_payload(1, 3)
    post = db_post(db, payload)
    data = quote(json.dumps(payload, separators=(",", ":")))
    get = requests.get(f"{db.base_url}/search/?data={data}", timeout=5)
    assert post.status_code == get.status_code == 200
    assert post.json() == get.json()
    assert [m for m, *_ in db.searches()] == ["POST", "GET"]
    assert db.searches()[1] == ("GET", 1, 3, ("46",))


def test_db_pages_by_first_item_newest_first_with_page_and_total_counts(db: FakeDeutscheBank) -> None:
    _fill_db(db)
    results = [db_post(db, db_payload(first, 2)).json()["SearchResult"] for first in (1, 3, 5, 7)]
    assert [r["SearchResultCount"] for r in results] == [2, 2, 1, 0]
    assert {r["SearchResultCountAll"] for r in results} == {5}
    ids = [i["MatchedObjectId"] for r in results for i in r["SearchResultItems"]]
    assert ids == ["71104", "71103", "71102", "71101", "71100"]
    assert [i["RelevanceRank"] for i in results[1]["SearchResultItems"]] == [3, 4]
    for item in results[0]["SearchResultItems"]:
        assert item["MatchedObjectId"] == item["MatchedObjectDescriptor"]["PositionID"]


def test_db_country_filter_accepts_list_or_scalar_and_is_optional(db: FakeDeutscheBank) -> None:
    _fill_db(db)
    as_list = db_post(db, db_payload(country=("46",))).json()["SearchResult"]
    as_scalar = db_post(db, db_payload(country="46")).json()["SearchResult"]
    worldwide = db_post(db, db_payload(country=None)).json()["SearchResult"]
    assert as_list["SearchResultCountAll"] == as_scalar["SearchResultCountAll"] == 5
    assert worldwide["SearchResultCountAll"] == 6
    assert worldwide["SearchResultItems"][0]["MatchedObjectId"] == "70900"
    india = db_post(db, db_payload(country=("81",))).json()["SearchResult"]
    assert [i["MatchedObjectId"] for i in india["SearchResultItems"]] == ["70900"]


def test_db_returns_only_requested_descriptor_fields(db: FakeDeutscheBank) -> None:
    _fill_db(db)
    wanted = ["PositionID", "PositionTitle", "PositionLocation.CityName", "CareerLevel.Name", "UserArea.ProDivision"]
    item = db_post(db, db_payload(1, 1, descriptors=wanted)).json()["SearchResult"]["SearchResultItems"][0]
    descriptor = item["MatchedObjectDescriptor"]
    assert set(descriptor) == {"PositionID", "PositionTitle", "PositionLocation", "CareerLevel", "UserArea"}
    assert descriptor["PositionLocation"] == [{"CityName": "Frankfurt"}]
    assert set(descriptor["CareerLevel"][0]) == {"Name"} and set(descriptor["UserArea"]) == {"ProDivision"}
    bare = db_post(db, db_payload(1, 1, descriptors=["PositionID", "PositionLocation"])).json()
    assert bare["SearchResult"]["SearchResultItems"][0]["MatchedObjectDescriptor"]["PositionLocation"] == []
    db.bare_position_location_empty = False
    bare = db_post(db, db_payload(1, 1, descriptors=["PositionID", "PositionLocation"])).json()
    location = bare["SearchResult"]["SearchResultItems"][0]["MatchedObjectDescriptor"]["PositionLocation"][0]
    assert location["CityName"] == "Frankfurt" and location["Country"] == "46"
    full = db_post(db, db_payload(1, 1)).json()["SearchResult"]["SearchResultItems"][0]["MatchedObjectDescriptor"]
    assert {"PublicationEndDate", "PositionOfferingType", "PositionHiringYear", "OrganizationName"} <= set(full)


def test_make_db_item_has_a_workday_apply_uri_and_can_lack_a_location() -> None:
    item = make_db_item("71288", "IT-Architekt Zahlungsverkehr (m/w/d)", published=date(2026, 11, 20),
                        city="Frankfurt", subdivision="Hessen", empty_location=True)
    descriptor = item["MatchedObjectDescriptor"]
    assert descriptor["PositionLocation"] == []
    assert re.fullmatch(
        r"https://db\.wd3\.myworkdayjobs\.com/DBWebsite/job/Frankfurt-Taunusanlage-12/"
        r"IT-Architekt-Zahlungsverkehr--m-w-d-_R0\d{6}/apply", descriptor["ApplyURI"][0])
    assert descriptor["PublicationStartDate"] == "2026-11-20" and descriptor["PublicationEndDate"] == "2099-12-31"
    assert descriptor["PositionURI"] == "/index.php?ac=jobad&id=71288"


def test_db_jobhtml_answers_html_empty_or_404(db: FakeDeutscheBank) -> None:
    db.add(make_db_item("1", "A", published=TODAY, city="Berlin", subdivision="Berlin"), html="<h2>A</h2>")
    db.add(make_db_item("2", "B", published=TODAY, city="Berlin", subdivision="Berlin"), html="")
    db.add(make_db_item("3", "C", published=TODAY, city="Berlin", subdivision="Berlin"), html=None)

    def get(pid: str) -> requests.Response:
        return requests.get(f"{db.base_url}/jobhtml/{pid}.json", timeout=5)

    ok = get("1")
    assert ok.status_code == 200 and ok.json()["html"] == "<h2>A</h2>"
    assert ok.json()["apply_uri"].endswith("/apply")
    assert get("2").status_code == 200 and get("2").json()["html"] == ""
    assert get("3").status_code == 404 and get("999").status_code == 404
    assert db.jobhtml_calls() == ["1", "2", "2", "3", "999"]


def test_db_faults_match_first_item_of_the_payload(db: FakeDeutscheBank) -> None:
    _fill_db(db)
    db.fail_next("/search/", status=503, retry_after="1", match={"FirstItem": 3})
    db.fail_next("/jobhtml/", drop=True)
    assert db_post(db, db_payload(1, 2)).status_code == 200
    failed = db_post(db, db_payload(3, 2))
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert db_post(db, db_payload(3, 2)).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{db.base_url}/jobhtml/71100.json", timeout=5)
    assert requests.get(f"{db.base_url}/jobhtml/71100.json", timeout=5).status_code == 200


def test_db_bad_search_json_is_400(db: FakeDeutscheBank) -> None:
    resp = requests.post(f"{db.base_url}/search/", data="{nope", headers={"Content-Type": "application/json"},
                         timeout=5)
    assert resp.status_code == 400
    assert db_post(db, db_payload(0, 10)).status_code == 400


# ------------------------------------------------------------------------------------------------
# Sample files (data/sample)
# ------------------------------------------------------------------------------------------------


def _load(name: str) -> Any:
    return json.loads((SAMPLE_DIR / name).read_text(encoding="utf-8"))


def test_sample_files_are_consistent_and_span_five_days() -> None:
    aa_items = _load("jobsuche_search_v6.json")["ergebnisliste"]
    details = _load("jobsuche_details.json")
    db_result = _load("deutsche_bank_search.json")["SearchResult"]
    jobhtml = _load("deutsche_bank_jobhtml.json")
    db_items = db_result["SearchResultItems"]

    aa_ids = [i["referenznummer"] for i in aa_items]
    db_ids = [i["MatchedObjectId"] for i in db_items]
    assert 20 <= len(aa_ids) <= 24 and 6 <= len(db_ids) <= 10
    assert len(set(aa_ids)) == len(aa_ids) and len(set(db_ids)) == len(db_ids)
    assert set(details) == set(aa_ids) and set(jobhtml) == set(db_ids)
    assert db_result["SearchResultCount"] == db_result["SearchResultCountAll"] == len(db_items)

    aa_dates = {i["veroeffentlichungszeitraum"]["von"] for i in aa_items}
    db_dates = {i["MatchedObjectDescriptor"]["PublicationStartDate"] for i in db_items}
    expected = {(date(2026, 11, 16) + timedelta(days=n)).isoformat() for n in range(5)}
    assert aa_dates == expected and db_dates <= expected and aa_dates | db_dates == expected
    for item in aa_items:
        refnr = item["referenznummer"]
        assert details[refnr]["referenznummer"] == refnr
        assert details[refnr]["veroeffentlichungszeitraum"]["von"] == item["veroeffentlichungszeitraum"]["von"]
        assert item["datumErsteVeroeffentlichung"] <= item["veroeffentlichungszeitraum"]["von"]
        assert item["hauptberuf"] and item["stellenangebotsTitel"] and item["firma"]
        for loc in item["stellenlokationen"]:
            assert loc["adresse"]["region"] in ENUM_STATES and loc["adresse"]["land"] == "DEUTSCHLAND"
    for item in db_items:
        descriptor = item["MatchedObjectDescriptor"]
        assert descriptor["PositionID"] == item["MatchedObjectId"]
        assert jobhtml[item["MatchedObjectId"]]["html"].strip()
        assert jobhtml[item["MatchedObjectId"]]["apply_uri"] == descriptor["ApplyURI"][0]


def test_sample_postings_cover_states_partners_and_description_styles() -> None:
    aa_items = _load("jobsuche_search_v6.json")["ergebnisliste"]
    details = _load("jobsuche_details.json")
    states = {ENUM_STATES[i["stellenlokationen"][0]["adresse"]["region"]] for i in aa_items}
    assert len(states) >= 8
    assert {"Hessen", "Sachsen", "Bayern", "Nordrhein-Westfalen", "Berlin", "Hamburg", "Baden-Württemberg"} <= states
    partners = [i for i in aa_items if i.get("externeURL")]
    assert len(partners) == 2
    for item in partners:
        assert details[item["referenznummer"]]["stellenangebotsBeschreibung"] == ""
        assert details[item["referenznummer"]]["externeURL"] == item["externeURL"]
    texts = [d["stellenangebotsBeschreibung"] for d in details.values() if not d.get("externeURL")]
    assert all(300 <= len(t) <= 2500 for t in texts)
    assert sum("**" in t for t in texts) >= 3
    assert sum("<style" in t or 'style="' in t for t in texts) == 1
    assert any(len(i["stellenlokationen"]) > 1 for i in aa_items)
    assert len({i["hauptberuf"] for i in aa_items}) >= 10


def test_reset_forgets_postings_faults_knobs_and_the_log(aa: FakeJobsuche, db: FakeDeutscheBank) -> None:
    aa.add(_item(1), state="Bayern")
    aa.fail_next("/pc/v6/jobs", status=500)
    aa.total_override = 9
    search(aa, "/pc/v4/jobs")
    db.add(make_db_item("1", "A", published=TODAY, city="Berlin", subdivision="Berlin"), html="<p>A</p>")
    db.fail_next("/search/", status=500)
    aa.reset()
    db.reset()
    assert aa.requests == [] and aa.faults.pending() == 0 and db.faults.pending() == 0
    body = search(aa, wo="Bayern").json()
    assert body["maxErgebnisse"] == 0 and "ergebnisliste" not in body
    assert db_post(db, db_payload()).json()["SearchResult"]["SearchResultCountAll"] == 0
