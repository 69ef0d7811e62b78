"""Parsing of the Jobsuche and Deutsche Bank wire formats (pure functions, no HTTP)."""

from __future__ import annotations

import base64
from datetime import date

import pytest

from ty_pipeline.domain.deutsche_bank_format import (
    city_from_workday_url,
    normalize_db_item,
    parse_search_response,
)
from ty_pipeline.domain.html_text import clean_description, html_to_text
from ty_pipeline.domain.jobsuche_format import (
    MalformedResponse,
    encode_refnr,
    normalize_search_item,
    parse_details,
    parse_search_page,
)
from ty_pipeline.domain.states import STATES, canonical_state, wo_for_state

V6_ITEM = {
    "stellenangebotsTitel": "Softwareentwickler Java / Kotlin (m/w/d)",
    "stellenlokationen": [
        {"adresse": {"plz": "10117", "ort": "Berlin", "region": "BERLIN", "land": "DEUTSCHLAND"},
         "breite": 52.5, "laenge": 13.4}
    ],
    "veroeffentlichungszeitraum": {"von": "2026-09-15"},
    "datumErsteVeroeffentlichung": "2026-06-30",
    "hauptberuf": "Softwareentwickler/in",
    "firma": "Spreewerk Digital GmbH",
    "referenznummer": "10001-1004417325-S",
    "verguetungsangabe": "KEINE_ANGABEN",
}
V4_ITEM = {
    "beruf": "Erzieher/in",
    "titel": "Erzieherin / Erzieher (m/w/d)",
    "refnr": "10001-1003912847-S",
    "arbeitsort": {"plz": "80331", "ort": "München", "region": "Bayern", "land": "Deutschland",
                   "koordinaten": {"lat": 48.1, "lon": 11.5}},
    "arbeitgeber": "Kinderhaus Isarzwerge e.V.",
    "aktuelleVeroeffentlichungsdatum": "2026-06-02",
    "externeUrl": "https://partner.example/job/1",
}


def test_v6_and_v4_pages_are_both_read() -> None:
    v6 = parse_search_page({"ergebnisliste": [V6_ITEM], "maxErgebnisse": 1342, "page": 1, "size": 1})
    v4 = parse_search_page({"stellenangebote": [V4_ITEM], "maxErgebnisse": "2417"})
    assert (v6.shape, v6.total, len(v6.items)) == ("v6", 1342, 1)
    assert (v4.shape, v4.total) == ("v4", 2417)


def test_empty_v6_answer_has_no_list_key() -> None:
    page = parse_search_page({"maxErgebnisse": 0, "page": 1, "size": 2, "woOutput": {}})
    assert page.items == [] and page.total == 0 and page.shape == "empty"


@pytest.mark.parametrize("payload", [[], "x", {"ergebnisliste": {"a": 1}}, {"messages": [{"code": "X"}]}])
def test_unreadable_search_payloads_raise(payload: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_search_page(payload)


def test_v6_item_normalisation_uses_current_publication_and_canonical_state() -> None:
    r = normalize_search_item(V6_ITEM)
    assert r.external_id == "10001-1004417325-S"
    assert r.published_date == date(2026, 9, 15) and r.first_published_date == date(2026, 6, 30)
    assert (r.city, r.state, r.country, r.beruf) == ("Berlin", "Berlin", "Deutschland", "Softwareentwickler/in")
    assert r.external_url == "https://www.arbeitsagentur.de/jobsuche/jobdetail/10001-1004417325-S"


def test_v4_item_normalisation_and_partner_url() -> None:
    r = normalize_search_item(V4_ITEM)
    assert (r.title, r.employer, r.state, r.published_date) == (
        "Erzieherin / Erzieher (m/w/d)", "Kinderhaus Isarzwerge e.V.", "Bayern", date(2026, 6, 2))
    assert r.partner_url == "https://partner.example/job/1" and r.latitude == 48.1


def test_missing_title_falls_back_to_profession_and_missing_region_to_query_state() -> None:
    item = {k: v for k, v in V6_ITEM.items() if k not in ("stellenangebotsTitel", "stellenlokationen")}
    r = normalize_search_item(item, state_hint="Hessen")
    assert r.title == "Softwareentwickler/in" and r.state == "Hessen"
    with pytest.raises(MalformedResponse):
        normalize_search_item({"stellenangebotsTitel": "no id"})


def test_refnr_is_base64_encoded_for_details() -> None:
    assert encode_refnr("10001-1002716922-S") == "MTAwMDEtMTAwMjcxNjkyMi1T"
    odd = "11858-16036462-STA-S"
    assert base64.b64decode(encode_refnr(odd) + "=" * (-len(encode_refnr(odd)) % 4)).decode() == odd


def test_details_text_partner_and_not_found() -> None:
    ok = parse_details({"referenznummer": "x", "stellenangebotsBeschreibung": "  **Über uns**\nText  "})
    assert ok.description == "**Über uns**\nText" and not ok.not_found
    legacy = parse_details({"refnr": "x", "stellenbeschreibung": "Alt"})
    assert legacy.description == "Alt"
    partner = parse_details({"referenznummer": "x", "stellenangebotsBeschreibung": "", "externeURL": "https://p/1"})
    assert partner.description is None and partner.partner_url == "https://p/1"
    gone = parse_details({"messages": [{"code": "STELLENANGEBOT_NICHT_GEFUNDEN"}]})
    assert gone.not_found


def test_state_spellings() -> None:
    assert canonical_state("BADEN_WUERTTEMBERG") == "Baden-Württemberg"
    assert canonical_state("THUERINGEN") == "Thüringen"
    assert canonical_state("Nordrhein-Westfalen") == "Nordrhein-Westfalen"
    assert canonical_state("Ausland") is None and canonical_state(None) is None
    assert len(STATES) == 16 and all(canonical_state(s) == s for s in STATES)
    assert wo_for_state("Hessen") == "Bundesland Hessen" and wo_for_state("Sachsen") == "Bundesland Sachsen"
    assert wo_for_state("Sachsen-Anhalt") == "Sachsen-Anhalt"


DB_ITEM = {
    "MatchedObjectId": "70412",
    "MatchedObjectDescriptor": {
        "PositionID": "70412",
        "PositionTitle": "Senior Data Engineer (m/w/d)",
        "ApplyURI": ["https://db.wd3.myworkdayjobs.com/DBWebsite/job/Frankfurt-Taunusanlage-12/X_R0412233/apply"],
        "PositionLocation": [],
        "PublicationStartDate": "2026-09-22",
    },
}


def test_db_item_with_empty_location_reads_city_from_workday_slug() -> None:
    r = normalize_db_item(DB_ITEM)
    assert (r.external_id, r.city, r.state, r.country) == ("70412", "Frankfurt am Main", "Hessen", "Deutschland")
    assert r.external_url.endswith("_R0412233") and r.published_date == date(2026, 9, 22)


def test_db_item_location_fields_win_and_uri_fallback() -> None:
    item = {"MatchedObjectId": "1", "MatchedObjectDescriptor": {
        "PositionTitle": "Kundenberater", "PositionURI": "/index.php?ac=jobad&id=1",
        "PositionLocation": [{"CityName": "Berlin", "CountrySubDivisionName": "Berlin", "CountryName": "Deutschland"}]}}
    r = normalize_db_item(item)
    assert (r.city, r.state) == ("Berlin", "Berlin")
    assert r.external_url == "https://careers.db.com/index.php?ac=jobad&id=1"
    assert city_from_workday_url("https://x/DBWebsite/job/Unbekannt-Strasse-1/T_R1/apply") == ("Unbekannt", None)


def test_db_search_paging_total_prefers_count_all() -> None:
    page = parse_search_response({"SearchResult": {"SearchResultCount": 2, "SearchResultCountAll": 612,
                                                   "SearchResultItems": [DB_ITEM, DB_ITEM]}})
    assert page.total == 612 and len(page.items) == 2
    with pytest.raises(MalformedResponse):
        parse_search_response({"unexpected": True})


def test_html_to_text_keeps_structure_and_drops_markup() -> None:
    html = ("<h2>Data Engineer</h2><style>.x{color:red}</style><p>Wir&nbsp;suchen &amp; bieten</p>"
            "<ul><li>Spark</li><li>Kafka</li></ul><script>alert(1)</script>")
    text = html_to_text(html)
    assert [line for line in text.splitlines() if line] == ["Data Engineer", "Wir suchen & bieten", "- Spark", "- Kafka"]
    assert "\n- Spark\n- Kafka" in text  # list items are not separated by blank lines
    assert clean_description("Zeile 1\r\n\r\n\r\nZeile   2 &amp; 3") == "Zeile 1\n\nZeile 2 & 3"


def test_leaked_css_rule_is_removed_without_eating_the_text_before_it() -> None:
    html = "<p>Wir bieten:</p>\n.job-ad li{margin:0}\n<ul><li>Schichtzulagen nach Tarif</li><li>Arbeitskleidung</li></ul>"
    text = html_to_text(html)
    assert "margin" not in text
    assert "Wir bieten:" in text and "- Schichtzulagen nach Tarif" in text and "- Arbeitskleidung" in text


def test_db_city_has_one_name_whichever_field_it_comes_from() -> None:
    from_field = {"MatchedObjectId": "2", "MatchedObjectDescriptor": {
        "PositionTitle": "Analyst", "PositionLocation": [{"CityName": "Frankfurt", "CountryName": "Deutschland"}]}}
    assert normalize_db_item(from_field).city == normalize_db_item(DB_ITEM).city == "Frankfurt am Main"
    assert normalize_db_item(from_field).state == "Hessen"
