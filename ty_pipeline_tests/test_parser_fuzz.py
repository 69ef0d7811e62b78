"""Property-based fuzzing of what turns API bytes into stored text (issue #9, "Also").

Wire parsers (Jobsuche and Deutsche Bank), title cleaning and HTML-to-text get arbitrary unicode,
control characters, lone surrogates, entities and malformed structures. Two properties hold for all:
nothing but our documented `MalformedResponse` escapes (and that one is counted by the fetchers), and
no control character or surrogate survives into a value that is stored. Examples are bounded so the
whole module stays well under 20 seconds; the seed is derandomized so CI failures reproduce.
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ty_pipeline.domain.deutsche_bank_format import (
    normalize_db_item,
    parse_jobhtml,
    parse_search_response,
)
from ty_pipeline.domain.html_text import clean_description, html_to_text
from ty_pipeline.domain.jobsuche_format import (
    MalformedResponse,
    normalize_search_item,
    parse_details,
    parse_search_page,
)
from ty_pipeline.domain.posting_record import PostingRecord
from ty_pipeline.domain.text_clean import clean_payload, clean_text, strip_unstorable, unescape_entities
from ty_pipeline.domain.titles import clean_job_title, title_key
from ty_pipeline_tests.fakes.deutsche_bank_server import make_db_item
from ty_pipeline_tests.fakes.jobsuche_server import make_detail, make_v6_item, to_v4_item

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
DAY = date(2026, 10, 1)

# Everything that must never be stored: C0 controls except tab/newline, DEL, C1 controls, surrogates.
FORBIDDEN = {chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}

NASTY = [
    "\x00", "\x01", "\x07", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\x9f", "\r", "\r\n", "\t", "\n",
    "\ud800", "\udfff", "\ud83d", "\u2028", "\ufeff", "\u0308", "&", "&amp;", "&amp;amp;", "&lt;", "&gt;",
    "&#0;", "&#1;", "&#x1b;", "&#xd800;", "&#99999999;", "&nbsp;", "&copy", "&unknown;", "&#x;", "<", ">",
    "<p>", "</p>", "<li>", "<br/>", "<script>", "</script>", "<style>", "<!--", "-->", "<!", "<![", "<![CDATA[",
    "<?", "</", "<a href='x'>", "(m/w/d)", "|", "/", "-", " - ", "(", ")", "[", "]", "Köchin", "ẞ", "\u00a0",
]
nasty_text = st.lists(
    st.one_of(
        st.sampled_from(NASTY),
        st.text(alphabet=st.characters(exclude_categories=()), max_size=8),  # surrogates included
    ),
    max_size=12,
).map("".join)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), nasty_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(nasty_text, children, max_size=4),
    max_leaves=12,
)

V6_KEYS = ["referenznummer", "stellenangebotsTitel", "hauptberuf", "firma", "stellenlokationen", "externeURL",
           "veroeffentlichungszeitraum", "datumErsteVeroeffentlichung", "refnr", "titel", "arbeitsort"]
DB_KEYS = ["PositionID", "PositionTitle", "PositionURI", "ApplyURI", "PositionLocation", "PublicationStartDate"]


def _base_v6() -> dict[str, Any]:
    return make_v6_item("10001-1000000001-S", "Koch/Köchin (m/w/d)", published=DAY, state="Berlin",
                        city="Berlin", plz="10115", externe_url="https://partner.example/job?a=1&amp;b=2")


def _location_values() -> st.SearchStrategy[Any]:
    """A `stellenlokationen` list whose address fields are arbitrary (the nesting is where parsers crash)."""
    address = st.dictionaries(st.sampled_from(["ort", "plz", "region", "land", "strasse"]), json_values, max_size=5)
    location = st.fixed_dictionaries({}, optional={"adresse": address | json_values, "breite": json_values,
                                                   "laenge": json_values})
    return st.lists(location | json_values, max_size=2) | json_values


v6_items = st.builds(
    lambda overrides, locations, base: {**base, **overrides, **({"stellenlokationen": locations} if locations else {})},
    st.dictionaries(st.sampled_from(V6_KEYS), json_values, max_size=5),
    st.none() | _location_values(),
    st.just(None).map(lambda _: _base_v6()),
)


def _base_db() -> dict[str, Any]:
    return make_db_item("70001", "Funds Transfer Pricing &amp; Treasury (m/w/d)", published=DAY,
                        city="Frankfurt", subdivision="Hessen")


def _db_item(overrides: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    item = _base_db()
    item["MatchedObjectDescriptor"] = {**item["MatchedObjectDescriptor"], **overrides}
    return {**item, **top}


db_items = st.builds(
    _db_item,
    st.dictionaries(st.sampled_from(DB_KEYS), json_values, max_size=4),
    st.dictionaries(st.sampled_from(["MatchedObjectId", "MatchedObjectDescriptor"]), json_values, max_size=1),
)


def assert_storable(value: Any, where: str = "value") -> None:
    """No forbidden character in any string, and every string encodes as UTF-8 (what the drivers do)."""
    if isinstance(value, str):
        bad = sorted({f"U+{ord(c):04X}" for c in value if c in FORBIDDEN})
        assert not bad, f"{where} keeps {bad}: {value!r}"
        value.encode("utf-8")
    elif isinstance(value, dict):
        for k, v in value.items():
            assert_storable(k, f"{where} key")
            assert_storable(v, f"{where}[{k!r}]")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_storable(v, f"{where}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where} is {value}"


def assert_record_storable(record: PostingRecord) -> None:
    for name in ("external_id", "title", "employer", "beruf", "city", "postal_code", "state", "country",
                 "external_url", "partner_url"):
        assert_storable(getattr(record, name), name)
    for name in ("latitude", "longitude"):
        assert_storable(getattr(record, name), name)
    assert_storable(record.raw, "raw")
    json.dumps(record.raw, ensure_ascii=False, sort_keys=True).encode("utf-8")  # what raw_json stores
    assert record.content_hash()


# --- Jobsuche ------------------------------------------------------------------------------------


@FUZZ
@given(v6_items, st.booleans())
def test_jobsuche_search_items_parse_or_are_malformed(item: dict[str, Any], as_v4: bool) -> None:
    if as_v4:
        try:
            item = to_v4_item(item)
        except (AttributeError, TypeError, KeyError):
            return  # the fake's converter needs a v6 shape; the v4 path is fuzzed with the raw item too
    try:
        record = normalize_search_item(item, state_hint="Berlin")
    except MalformedResponse:
        return
    assert_record_storable(record)
    assert record.published_date is not None  # undated items are malformed (issue #9, 15)


@FUZZ
@given(json_values)
def test_jobsuche_search_pages_and_arbitrary_items(payload: Any) -> None:
    for candidate in (payload, {"ergebnisliste": payload, "maxErgebnisse": payload}, {"stellenangebote": payload}):
        try:
            page = parse_search_page(candidate)
        except MalformedResponse:
            continue
        for item in page.items:
            with contextlib.suppress(MalformedResponse):
                assert_record_storable(normalize_search_item(item))


@FUZZ
@given(nasty_text, st.dictionaries(st.sampled_from(["messages", "externeURL", "stellenbeschreibung",
                                                     "referenznummer"]), json_values, max_size=3))
def test_jobsuche_details_parse_or_are_malformed(description: str, overrides: dict[str, Any]) -> None:
    payload = {**make_detail(_base_v6(), description), **overrides}
    try:
        content = parse_details(payload)
    except MalformedResponse:
        return
    assert_storable(content.partner_url, "partner_url")
    if content.description is not None:
        assert_storable(clean_description(content.description), "description")


# --- Deutsche Bank -------------------------------------------------------------------------------


@FUZZ
@given(db_items)
def test_deutsche_bank_items_parse_or_are_malformed(item: dict[str, Any]) -> None:
    try:
        record = normalize_db_item(item)
    except MalformedResponse:
        return
    assert_record_storable(record)


@FUZZ
@given(json_values)
def test_deutsche_bank_search_and_jobhtml_answers(payload: Any) -> None:
    for candidate in (payload, {"SearchResult": payload},
                      {"SearchResult": {"SearchResultItems": payload, "SearchResultCountAll": payload}}):
        try:
            page = parse_search_response(candidate)
        except MalformedResponse:
            continue
        for item in page.items:
            with contextlib.suppress(MalformedResponse):
                assert_record_storable(normalize_db_item(item))
    for candidate in (payload, {"html": payload, "apply_uri": payload}):
        try:
            job = parse_jobhtml(candidate)
        except MalformedResponse:
            continue
        assert_storable(job.apply_uri, "apply_uri")
        if job.html is not None:
            assert_storable(html_to_text(job.html), "jobhtml text")


# --- Text --------------------------------------------------------------------------------------


@FUZZ
@given(nasty_text)
def test_html_and_plain_descriptions_become_storable_text(text: str) -> None:
    for out in (html_to_text(text), clean_description(text), html_to_text(f"<div><p>{text}</p><ul><li>{text}")):
        assert_storable(out, "description")


@FUZZ
@given(nasty_text, st.lists(nasty_text, max_size=2))
def test_title_cleaning_never_raises_and_keeps_no_control_characters(title: str, places: list[str]) -> None:
    assert_storable(clean_job_title(title, places), "clean title")
    assert_storable(title_key(title), "title key")


@FUZZ
@given(nasty_text)
def test_cleaning_is_idempotent_and_decodes_entities_exactly_once(text: str) -> None:
    once = strip_unstorable(text)
    assert strip_unstorable(once) == once
    assert_storable(clean_text(text), "clean text")
    # Exactly once: what a text says after one decoding is what it keeps (`&amp;amp;` -> `&amp;`).
    escaped = text.replace("&", "&amp;")
    assert unescape_entities(escaped) == text


def test_the_fixed_cases_the_issue_names() -> None:
    assert clean_text("Funds Transfer Pricing &amp; Treasury") == "Funds Transfer Pricing & Treasury"
    assert clean_text("A &amp;amp; B") == "A &amp; B"
    assert clean_text("R&D, AT&T, &copy 2026") == "R&D, AT&T, &copy 2026"  # no `;`, no entity
    assert clean_text("Koch\x00in\x1b\r\nTeam\ud800") == "Kochin\nTeam"
    assert clean_text("&#0;&#1;&#xd800;x") == "\ufffd\ufffdx"  # never a control character through a reference
    assert clean_text("a\x0bb\x0cc") == "a b c"  # white-space controls keep words apart


@pytest.mark.parametrize("name", ["jobsuche_search_v6.json", "deutsche_bank_search.json"])
def test_the_shipped_sample_answers_parse_unchanged_by_cleaning(name: str) -> None:
    """Clean real-shaped data is left exactly as it was: cleaning only ever removes what cannot be stored."""
    payload = json.loads((Path(__file__).resolve().parents[1] / "data" / "sample" / name).read_text("utf-8"))
    items = payload.get("ergebnisliste") or payload["SearchResult"]["SearchResultItems"]
    for item in items:
        record = normalize_search_item(item) if "ergebnisliste" in payload else normalize_db_item(item)
        assert record.raw == item


def test_non_finite_numbers_in_a_payload_become_null() -> None:
    """Python's JSON decoder accepts NaN and Infinity (not JSON); raw_json must stay strict JSON."""
    decoded = json.loads('{"MatchedObjectId": Infinity, "Score": NaN, "ids": [1, -Infinity, 2.5]}')
    cleaned = clean_payload(decoded)
    assert cleaned == {"MatchedObjectId": None, "Score": None, "ids": [1, None, 2.5]}
    json.dumps(cleaned, allow_nan=False)  # raises on any NaN/Infinity left
