"""Parsing of the Deutsche Bank careers API (Beesite "Global Jobboard") search and jobhtml answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ty_pipeline.domain.jobsuche_format import MalformedResponse
from ty_pipeline.domain.posting_record import (
    Origin,
    PostingRecord,
    Source,
    clean_str,
    clean_url,
    parse_iso_date,
)
from ty_pipeline.domain.states import canonical_state
from ty_pipeline.domain.text_clean import clean_payload, strip_unstorable

CAREERS_SITE = "https://careers.db.com"

# Fields requested per item. Dotted sub-fields matter: asking for bare `PositionLocation` returned an
# empty array in 2026 and every city became "Unknown" upstream (docs/wire_formats.md §2.2).
DESCRIPTOR_FIELDS: tuple[str, ...] = (
    "PositionID",
    "PositionTitle",
    "PositionURI",
    "ApplyURI",
    "PositionLocation.CityName",
    "PositionLocation.CountryName",
    "PositionLocation.CountrySubDivisionName",
    "OrganizationName",
    "CareerLevel.Name",
    "PositionSchedule.Name",
    "PositionOfferingType.Name",
    "PublicationStartDate",
    "PublicationEndDate",
    "PositionHiringYear",
    "UserArea.ProDivision",
)
GERMANY_COUNTRY_ID = "46"

# City -> state for Deutsche Bank sites, used when the API leaves PositionLocation empty and the city
# has to be read from the Workday URL slug (docs/domain_rules.md §1.4).
DB_CITY_STATES: dict[str, str] = {
    "frankfurt": "Hessen",
    "eschborn": "Hessen",
    "wiesbaden": "Hessen",
    "berlin": "Berlin",
    "hamburg": "Hamburg",
    "muenchen": "Bayern",
    "munich": "Bayern",
    "nuernberg": "Bayern",
    "duesseldorf": "Nordrhein-Westfalen",
    "koeln": "Nordrhein-Westfalen",
    "cologne": "Nordrhein-Westfalen",
    "bonn": "Nordrhein-Westfalen",
    "essen": "Nordrhein-Westfalen",
    "dortmund": "Nordrhein-Westfalen",
    "stuttgart": "Baden-Württemberg",
    "mannheim": "Baden-Württemberg",
    "leipzig": "Sachsen",
    "dresden": "Sachsen",
    "hannover": "Niedersachsen",
    "bremen": "Bremen",
    "magdeburg": "Sachsen-Anhalt",
    "erfurt": "Thüringen",
    "kiel": "Schleswig-Holstein",
    "mainz": "Rheinland-Pfalz",
    "saarbruecken": "Saarland",
    "potsdam": "Brandenburg",
    "rostock": "Mecklenburg-Vorpommern",
}
_CANONICAL_CITY = {
    "frankfurt": "Frankfurt am Main",
    "muenchen": "München",
    "munich": "München",
    "nuernberg": "Nürnberg",
    "duesseldorf": "Düsseldorf",
    "koeln": "Köln",
    "cologne": "Köln",
    "saarbruecken": "Saarbrücken",
}
_SLUG_RE = re.compile(r"/job/([^/]+)/")


@dataclass(frozen=True)
class DbSearchPage:
    items: list[dict[str, Any]]
    total: int | None  # SearchResultCountAll (total matches); None when absent


def search_request(first_item: int, count: int, country_ids: list[str] | None) -> dict[str, Any]:
    """The JSON the careers SPA sends; `FirstItem` is 1-based."""
    criteria = []
    if country_ids:
        criteria.append({"CriterionName": "PositionLocation.Country", "CriterionValue": list(country_ids)})
    return {
        "LanguageCode": "en",
        "SearchParameters": {
            "FirstItem": first_item,
            "CountItem": count,
            "MatchedObjectDescriptor": list(DESCRIPTOR_FIELDS),
            "Sort": [{"Criterion": "PublicationStartDate", "Direction": "DESC"}],
        },
        "SearchCriteria": criteria,
    }


def parse_search_response(payload: Any) -> DbSearchPage:
    if not isinstance(payload, dict) or not isinstance(payload.get("SearchResult"), dict):
        raise MalformedResponse("Deutsche Bank search answer has no SearchResult object")
    result = payload["SearchResult"]
    items = result.get("SearchResultItems") or []
    if not isinstance(items, list):
        raise MalformedResponse("SearchResultItems is not a list")
    total = result.get("SearchResultCountAll")
    if total is None:
        total = result.get("SearchResultCount")
    try:
        total_int = int(total) if total is not None and not isinstance(total, bool) else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON 1e999
        total_int = None
    return DbSearchPage(items=[i for i in items if isinstance(i, dict)], total=total_int)


def _first_apply_uri(descriptor: dict[str, Any]) -> str | None:
    apply = descriptor.get("ApplyURI")
    if isinstance(apply, list):
        apply = next((a for a in apply if isinstance(a, str) and a.strip()), None)
    return clean_url(apply)


def _slug_key(text: str) -> str:
    text = text.casefold()
    for src, dst in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(src, dst)
    return text


def city_from_workday_url(url: str | None) -> tuple[str | None, str | None]:
    """City and state from `/job/<Location-Slug>/...`, e.g. `Frankfurt-Taunusanlage-12` -> Frankfurt."""
    if not url:
        return None, None
    # Percent-decoding can produce what the cleaned URL no longer held (`%00`), so clean again.
    match = _SLUG_RE.search(strip_unstorable(unquote(url)))
    if not match:
        return None, None
    tokens = [t for t in match.group(1).split("-") if t]
    for token in tokens:
        key = _slug_key(token)
        if key in DB_CITY_STATES:
            return _CANONICAL_CITY.get(key, token), DB_CITY_STATES[key]
    return (tokens[0] if tokens else None), None


def normalize_db_item(item: dict[str, Any], *, origin: Origin = Origin.API) -> PostingRecord:
    """A search item as a PostingRecord; every string is made storable and titles entity-decoded here,
    once (`Funds Transfer Pricing &amp; ...` is stored as `... & ...`; domain/text_clean.py)."""
    if not isinstance(item, dict):
        raise MalformedResponse(f"Deutsche Bank item is {type(item).__name__}, expected an object")
    item = clean_payload(item)
    descriptor = item.get("MatchedObjectDescriptor") or {}
    if not isinstance(descriptor, dict):
        raise MalformedResponse("MatchedObjectDescriptor is not an object")
    position_id = clean_str(item.get("MatchedObjectId") or descriptor.get("PositionID"))
    if not position_id:
        raise MalformedResponse("Deutsche Bank item without MatchedObjectId/PositionID")
    apply_uri = _first_apply_uri(descriptor)
    locations = descriptor.get("PositionLocation") or []
    loc = locations[0] if isinstance(locations, list) and locations and isinstance(locations[0], dict) else {}
    city = clean_str(loc.get("CityName"))
    state = canonical_state(clean_str(loc.get("CountrySubDivisionName")))
    country = clean_str(loc.get("CountryName"))
    slug_city, slug_state = city_from_workday_url(apply_uri)
    if not city:
        city = slug_city
    elif _slug_key(city) in _CANONICAL_CITY:  # one name per city, whichever field it came from
        city = _CANONICAL_CITY[_slug_key(city)]
    if not state:
        state = DB_CITY_STATES.get(_slug_key(city or "").split(" ")[0]) or slug_state
    if not country and state:
        country = "Deutschland"
    if apply_uri:
        external_url = re.sub(r"/apply/?$", "", apply_uri)
    else:
        uri = clean_url(descriptor.get("PositionURI"))
        external_url = (uri if uri and uri.startswith("http") else f"{CAREERS_SITE}{uri}") if uri else CAREERS_SITE
    published = parse_iso_date(descriptor.get("PublicationStartDate"))
    return PostingRecord(
        source=Source.DEUTSCHE_BANK,
        external_id=position_id,
        title=clean_str(descriptor.get("PositionTitle")),
        employer="Deutsche Bank",
        city=city,
        state=state,
        country=country,
        external_url=external_url,
        published_date=published,
        first_published_date=published,
        origin=origin,
        raw=item,
    )


@dataclass(frozen=True)
class JobHtml:
    html: str | None
    apply_uri: str | None

    @property
    def gone(self) -> bool:
        return not (self.html and self.html.strip())


def parse_jobhtml(payload: Any) -> JobHtml:
    """The ad's HTML, made storable; `html_to_text` decodes its entities (once) later."""
    if not isinstance(payload, dict):
        raise MalformedResponse("jobhtml answer is not an object")
    payload = clean_payload(payload)
    html = payload.get("html")
    return JobHtml(html=html if isinstance(html, str) else None, apply_uri=clean_url(payload.get("apply_uri")))
