"""A loopback fake of the Deutsche Bank careers API (Beesite "Global Jobboard") in its real wire format.

Why: the production client pages with `FirstItem`/`CountItem`, filters Germany with
`PositionLocation.Country = ["46"]`, asks for dotted descriptor sub-fields and reads descriptions
from `jobhtml/{id}.json`; all of that has to be exercised over HTTP (docs/wire_formats.md §2):

* `POST /search/` with a JSON body, or `GET /search/?data=<URL-encoded JSON>` (what the SPA sends).
* `SearchResultCount` = items on this page, `SearchResultCountAll` = total matches.
* Only the descriptor keys requested in `MatchedObjectDescriptor` are returned; a dotted name
  (`PositionLocation.CityName`) returns the sub-object with only that sub-field. Requesting the bare
  `PositionLocation` returned an *empty* array in 2026 (docs/domain_rules.md §1.4); `bare_position_location_empty`
  reproduces that.
* `GET /jobhtml/{id}.json` -> `{"html", "apply_uri"}`; an empty `html` means the ad is gone.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

from ty_pipeline_tests.fakes.http_base import LoopbackServer, Request, Response
from ty_pipeline_tests.fakes.jobsuche_server import (
    Fault,
    FaultQueue,
    fault_response,
    spring_error,
    stable_int,
    waf_forbidden,
)

GERMANY_ID = "46"
DEFAULT_COUNT_ITEM = 10
WORKDAY_BASE = "https://db.wd3.myworkdayjobs.com/DBWebsite/job"

# CountryName -> (Country id, ISO code, continent id, continent name). 46 and 81 are the ids the API
# uses for Germany and India; the others are invented but stable.
COUNTRIES: dict[str, tuple[str, str, str, str]] = {
    "Deutschland": (GERMANY_ID, "DE", "1", "Europa"),
    "Indien": ("81", "IN", "3", "Asien"),
    "Vereinigtes Königreich": ("193", "GB", "1", "Europa"),
    "Vereinigte Staaten": ("194", "US", "2", "Nordamerika"),
    "Singapur": ("166", "SG", "3", "Asien"),
}
CITY_IDS: dict[str, str] = {"Frankfurt": "1698", "Berlin": "1622", "Hamburg": "1721", "München": "1815",
                            "Düsseldorf": "1672", "Eschborn": "1690", "Köln": "1788", "Leipzig": "1791"}
CITY_COORDS: dict[str, tuple[float, float]] = {
    "Frankfurt": (50.1109, 8.6821), "Berlin": (52.5200, 13.4050), "Hamburg": (53.5511, 9.9937),
    "München": (48.1351, 11.5820), "Düsseldorf": (51.2277, 6.7735), "Eschborn": (50.1436, 8.5712),
    "Köln": (50.9375, 6.9603), "Leipzig": (51.3397, 12.3731),
}
CAREER_LEVELS = ("kein Corporate Title", "Associate", "Assistant Vice President", "Vice President")


def workday_title_slug(title: str) -> str:
    """Workday's URL form of a title: every character outside [A-Za-z0-9] becomes '-'."""
    for src, dst in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue"), ("ß", "ss")):
        title = title.replace(src, dst)
    return re.sub(r"[^A-Za-z0-9]", "-", title)


def requisition_id(position_id: str) -> str:
    """A Workday requisition number like `R0412233`, stable per PositionID."""
    return f"R0{400000 + stable_int(position_id, 99999):06d}"


def make_db_item(
    position_id: str,
    title: str,
    *,
    published: date,
    city: str | None,
    subdivision: str | None,
    country: str = "Deutschland",
    workday_slug: str = "Frankfurt-Taunusanlage-12",
    empty_location: bool = False,
) -> dict[str, Any]:
    """A full `SearchResultItems` element as recorded from the API (LanguageCode "en" -> German labels).

    `empty_location=True` gives `PositionLocation: []`, which upstream saw in 2026; the city is then
    only recoverable from the Workday slug in `ApplyURI`.
    """
    country_id, country_code, continent_id, continent = COUNTRIES.get(
        country, (str(100 + stable_int(country, 99)), country[:2].upper(), "1", "Europa"))
    apply_uri = f"{WORKDAY_BASE}/{workday_slug}/{workday_title_slug(title)}_{requisition_id(position_id)}/apply"
    locations: list[dict[str, Any]] = []
    if not empty_location:
        loc: dict[str, Any] = {
            "Continent": continent_id,
            "ContinentName": continent,
            "Country": country_id,
            "CountryName": country,
            "CountryCode": country_code,
        }
        if city:
            loc["City"] = CITY_IDS.get(city, str(1600 + stable_int(city, 400)))
            loc["CityName"] = city
        if subdivision:
            loc["CountrySubDivisionName"] = subdivision
        if city in CITY_COORDS:
            loc["Latitude"], loc["Longitude"] = CITY_COORDS[city]
        locations.append(loc)
    level = CAREER_LEVELS[stable_int(position_id, len(CAREER_LEVELS))]
    temporary = stable_int(position_id + "t", 5) == 0
    descriptor: dict[str, Any] = {
        "PositionID": position_id,
        "PositionTitle": title,
        "PublicationCode": requisition_id(position_id),
        "PositionURI": f"/index.php?ac=jobad&id={position_id}",
        "PositionShortURI": f"https://careers.db.com/index.php?ac=jobad&id={position_id}",
        "ApplyURI": [apply_uri],
        "PublicationLanguage": {"Code": "de"},
        "PublicationStartDate": published.isoformat(),
        "PublicationEndDate": "2099-12-31",
        "CareerLevel": [{"Code": str(CAREER_LEVELS.index(level) + 1), "Name": level}],
        "PositionSchedule": [{"Code": "1", "Name": "Vollzeit"}],
        "PositionOfferingType": [{"Code": "2" if temporary else "1", "Name": "Befristet" if temporary else "Unbefristet"}],
        "PositionLocation": locations,
        "OrganizationName": city or workday_slug.split("-")[0],
        "LogoURI": [""],
        "UserArea": {"GradSearchType": None, "GradDivision": [], "ProDivision": 4 + stable_int(position_id, 3)},
        "PositionHiringYear": str(published.year),
    }
    return {
        "MatchedObjectId": position_id,
        "MatchedObjectDescriptor": descriptor,
        "RelevanceScore": 0,
        "RelevanceRank": 0,
    }


def select_descriptor(descriptor: dict[str, Any], names: list[str], *, bare_location_empty: bool) -> dict[str, Any]:
    """Only the requested descriptor keys; `A.B` keeps sub-field B of object/array A (API behaviour)."""
    whole: set[str] = set()
    subs: dict[str, list[str]] = {}
    for name in names:
        if not isinstance(name, str) or name.startswith("Facet:"):
            continue
        if "." in name:
            head, sub = name.split(".", 1)
            subs.setdefault(head, []).append(sub)
        else:
            whole.add(name)
    out: dict[str, Any] = {}
    for key, value in descriptor.items():
        if key in whole:
            if key == "PositionLocation" and bare_location_empty and key not in subs:
                out[key] = []
            else:
                out[key] = copy.deepcopy(value)
        elif key in subs:
            wanted = subs[key]
            if isinstance(value, list):
                out[key] = [{k: e[k] for k in wanted if k in e} for e in value if isinstance(e, dict)]
            elif isinstance(value, dict):
                out[key] = {k: value[k] for k in wanted if k in value}
            else:
                out[key] = copy.deepcopy(value)
    return out


@dataclass
class _DbPosting:
    item: dict[str, Any]
    html: str | None
    apply_uri: str | None
    country_id: str

    @property
    def descriptor(self) -> dict[str, Any]:
        return self.item.get("MatchedObjectDescriptor") or {}

    @property
    def position_id(self) -> str:
        return str(self.item.get("MatchedObjectId") or self.descriptor.get("PositionID"))


class BadSearchRequest(ValueError):
    pass


class FakeDeutscheBank(LoopbackServer):
    """Fake `api-deutschebank.beesite.de`; point the client's base URL at `base_url`.

    Knobs: `total_override` (reported `SearchResultCountAll`), `bare_position_location_empty`
    (default True: a bare `PositionLocation` descriptor answers `[]`), and the same fault queue as
    the Jobsuche fake (`fail_next`, matching on query parameters plus `FirstItem`/`CountItem` of the
    search payload).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total_override: int | None = None
        self.bare_position_location_empty = True
        self.faults = FaultQueue()
        self._postings: dict[str, _DbPosting] = {}
        self._state_lock = threading.RLock()

    # -- setup ---------------------------------------------------------------------------------

    def add(self, item: dict[str, Any], *, html: str | None, apply_uri: str | None = None,
            country_id: str | None = None) -> None:
        """List `item`. `html=None` makes jobhtml answer 404, `""` an empty (gone) ad. `apply_uri`
        defaults to the item's first ApplyURI. `country_id` (for the Country filter) defaults to the
        item's `PositionLocation[0].Country`, else Germany (items with an empty location are German)."""
        descriptor = item.get("MatchedObjectDescriptor") or {}
        position_id = item.get("MatchedObjectId") or descriptor.get("PositionID")
        if not position_id:
            raise ValueError("item has no MatchedObjectId/PositionID")
        if apply_uri is None:
            uris = descriptor.get("ApplyURI")
            apply_uri = uris[0] if isinstance(uris, list) and uris else uris if isinstance(uris, str) else None
        if country_id is None:
            locs = descriptor.get("PositionLocation") or []
            country_id = str(locs[0].get("Country", GERMANY_ID)) if locs else GERMANY_ID
        with self._state_lock:
            self._postings[str(position_id)] = _DbPosting(copy.deepcopy(item), html, apply_uri, country_id)

    def reset(self) -> None:
        """Forget ads, faults, knobs and the request log (reuse one started server across tests)."""
        with self._state_lock:
            self._postings.clear()
        self.faults.clear()
        self.total_override = None
        self.bare_position_location_empty = True
        with self._lock:
            self.requests.clear()

    def remove(self, position_id: str) -> None:
        """The ad is no longer listed (its jobhtml then answers 404 too)."""
        with self._state_lock:
            self._postings.pop(position_id, None)

    def set_html(self, position_id: str, html: str | None) -> None:
        """Change what jobhtml answers for a listed ad (e.g. "" once it has been taken down)."""
        with self._state_lock:
            self._postings[position_id].html = html

    def fail_next(
        self,
        path_prefix: str,
        *,
        status: int | None = None,
        times: int = 1,
        body: str | None = None,
        truncated_json: bool = False,
        drop: bool = False,
        retry_after: str | None = None,
        match: dict[str, Any] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Queue a fault; same semantics as `FakeJobsuche.fail_next`. `match` may name query parameters
        or `FirstItem` / `CountItem` of the search payload (POST body or `data=`)."""
        self.faults.add(Fault(path_prefix, status, times, body, truncated_json, drop, retry_after, match, delay_s))

    # -- log helpers ---------------------------------------------------------------------------

    def search_payloads(self) -> list[dict[str, Any] | None]:
        """The parsed search JSON of every search request received (None if unreadable), in order."""
        with self._lock:
            reqs = [r for r in self.requests if r.path in ("/search/", "/search")]
        out: list[dict[str, Any] | None] = []
        for req in reqs:
            try:
                out.append(_payload(req))
            except BadSearchRequest:
                out.append(None)
        return out

    def searches(self) -> list[tuple[str, int | None, int | None, tuple[str, ...]]]:
        """(method, FirstItem, CountItem, country ids filtered on) of every search request, in order."""
        with self._lock:
            reqs = [r for r in self.requests if r.path in ("/search/", "/search")]
        out = []
        for req in reqs:
            try:
                payload = _payload(req)
            except BadSearchRequest:
                out.append((req.method, None, None, ()))
                continue
            params = payload.get("SearchParameters") or {}
            out.append((req.method, _opt_int(params.get("FirstItem")), _opt_int(params.get("CountItem")),
                        tuple(sorted(_country_filter(payload) or ()))))
        return out

    def jobhtml_calls(self) -> list[str]:
        """PositionIDs of every jobhtml request received, in order."""
        return [_jobhtml_id(r.path) or r.path for r in self.requests_to("/jobhtml/")]

    # -- serving -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        fields = dict(request.query)
        if request.path in ("/search/", "/search"):
            try:
                params = (_payload(request).get("SearchParameters") or {})
                for key in ("FirstItem", "CountItem"):
                    if key in params:
                        fields[key] = str(params[key])
            except (BadSearchRequest, AttributeError):
                pass
        fault = self.faults.take(request, fields)
        if fault is not None:
            return fault_response(fault, lambda: self._serve(request), lambda s: self._status_body(s, request))
        return self._serve(request)

    def _status_body(self, status: int, request: Request) -> Response:
        if status == 403:
            return waf_forbidden()
        return spring_error(status, request.path)

    def _serve(self, request: Request) -> Response:
        path = request.path
        if path in ("/search/", "/search"):
            if request.method not in ("GET", "POST"):
                return spring_error(405, path)
            try:
                return self._search(_payload(request))
            except BadSearchRequest as exc:
                return Response.json_body({"error": str(exc)}, status=400)
        position_id = _jobhtml_id(path)
        if position_id is not None and request.method == "GET":
            with self._state_lock:
                posting = self._postings.get(position_id)
            if posting is None or posting.html is None:
                return Response.json_body({"error": "Not Found"}, status=404)
            return Response.json_body({"html": posting.html, "apply_uri": posting.apply_uri or ""})
        return spring_error(404, path)

    def _search(self, payload: dict[str, Any]) -> Response:
        params = payload.get("SearchParameters") or {}
        if not isinstance(params, dict):
            raise BadSearchRequest("SearchParameters must be an object")
        first = _opt_int(params.get("FirstItem", 1))
        count = _opt_int(params.get("CountItem", DEFAULT_COUNT_ITEM))
        if first is None or first < 1:
            raise BadSearchRequest("FirstItem must be an integer >= 1")
        if count is None or count < 0:
            raise BadSearchRequest("CountItem must be an integer >= 0")
        countries = _country_filter(payload)
        with self._state_lock:
            postings = list(self._postings.values())
        matched = [p for p in postings if countries is None or p.country_id in countries]
        descending = True
        for sort in params.get("Sort") or []:
            if isinstance(sort, dict) and sort.get("Criterion") == "PublicationStartDate":
                descending = str(sort.get("Direction", "DESC")).upper() != "ASC"
        matched.sort(key=lambda p: (str(p.descriptor.get("PublicationStartDate", "")), p.position_id),
                     reverse=descending)
        names = params.get("MatchedObjectDescriptor")
        page = matched[first - 1:first - 1 + count]
        items = []
        for rank, posting in enumerate(page, start=first):
            item = copy.deepcopy(posting.item)
            if isinstance(names, list) and names:
                item["MatchedObjectDescriptor"] = select_descriptor(
                    posting.descriptor, names, bare_location_empty=self.bare_position_location_empty)
            item["RelevanceScore"] = 0
            item["RelevanceRank"] = rank
            items.append(item)
        total = self.total_override if self.total_override is not None else len(matched)
        return Response.json_body({"SearchResult": {
            "SearchResultCount": len(items),
            "SearchResultCountAll": total,
            "SearchResultItems": items,
        }})


def _payload(request: Request) -> dict[str, Any]:
    """The search JSON from a POST body or from `?data=` (already URL-decoded by the server)."""
    raw: Any
    if request.method == "POST" and request.body:
        raw = request.body.decode("utf-8", errors="replace")
    elif "data" in request.query:
        raw = request.query["data"]
    else:
        return {}
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise BadSearchRequest(f"search JSON unreadable: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadSearchRequest("search JSON must be an object")
    return payload


def _country_filter(payload: dict[str, Any]) -> set[str] | None:
    """Country ids from `SearchCriteria` (`CriterionValue` scalar or list); None = worldwide."""
    countries: set[str] | None = None
    for criterion in payload.get("SearchCriteria") or []:
        if not isinstance(criterion, dict) or criterion.get("CriterionName") != "PositionLocation.Country":
            continue
        value = criterion.get("CriterionValue")
        values = value if isinstance(value, list) else [value]
        countries = (countries or set()) | {str(v) for v in values if v is not None and str(v) != ""}
    return countries


def _opt_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _jobhtml_id(path: str) -> str | None:
    match = re.fullmatch(r"/jobhtml/([^/]+)\.json", path)
    return match.group(1) if match else None
