"""A loopback fake of the Jobsuche API (Bundesagentur für Arbeit) that speaks its real wire formats.

Why a fake server and not mocked functions: the production client (session, headers, retries,
v6->v4 route fallback, base64 detail addressing) must be exercised over real HTTP exactly as in
production. The shapes follow docs/wire_formats.md §1:

* `GET /pc/v6/jobs` answers the current `ergebnisliste` envelope; `ergebnisliste` and `facetten` are
  *absent* when nothing matched (recorded no-match shape).
* `GET /pc/v4/jobs` answers the legacy `stellenangebote` shape; only one of the two search routes is
  alive at a time (`search_version`), the other answers 404 like the route retired in August 2026.
* `GET /pc/v4/jobdetails/{base64(refnr)}` answers the detail object; the raw refnr answers 404
  `STELLENANGEBOT_NICHT_GEFUNDEN`, which is what made the replaced system give up on the JSON route.
* Errors use the gateway body of §1.8 (`timestamp`, `logref`, `messages[{code, path, detail}]`).
* `wo` is fuzzy-geocoded: plain `Hessen` / `Sachsen` hit a village, so those states are only found
  with `Bundesland Hessen` / `Bundesland Sachsen` (docs/domain_rules.md §1.1).

Test knobs: `total_override`, `duplicate_across_pages`, `renamed_fields` and a fault queue
(`fail_next`) that the Deutsche Bank fake reuses.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from ty_pipeline_tests.fakes.http_base import LoopbackServer, Request, Response

DEFAULT_API_KEY = "jobboerse-jobsuche"
RESULT_WINDOW = 10_000
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
INPUT_ERROR_CODE = "EINGABEN_UNVOLLSTAENDIG_ODER_FEHLERHAFT"
NOT_FOUND_CODE = "STELLENANGEBOT_NICHT_GEFUNDEN"

# German state name -> v6 region enum. v4 (and the `state` argument of `add`) use the German name.
STATE_ENUMS: dict[str, str] = {
    "Baden-Württemberg": "BADEN_WUERTTEMBERG",
    "Bayern": "BAYERN",
    "Berlin": "BERLIN",
    "Brandenburg": "BRANDENBURG",
    "Bremen": "BREMEN",
    "Hamburg": "HAMBURG",
    "Hessen": "HESSEN",
    "Mecklenburg-Vorpommern": "MECKLENBURG_VORPOMMERN",
    "Niedersachsen": "NIEDERSACHSEN",
    "Nordrhein-Westfalen": "NORDRHEIN_WESTFALEN",
    "Rheinland-Pfalz": "RHEINLAND_PFALZ",
    "Saarland": "SAARLAND",
    "Sachsen": "SACHSEN",
    "Sachsen-Anhalt": "SACHSEN_ANHALT",
    "Schleswig-Holstein": "SCHLESWIG_HOLSTEIN",
    "Thüringen": "THUERINGEN",
}
ENUM_STATES: dict[str, str] = {v: k for k, v in STATE_ENUMS.items()}

# Rough state centres for `woOutput` and for cities missing from CITY_COORDS.
STATE_COORDS: dict[str, tuple[float, float]] = {
    "Baden-Württemberg": (48.6616, 9.3501),
    "Bayern": (48.7904, 11.4979),
    "Berlin": (52.5200, 13.4050),
    "Brandenburg": (52.4125, 12.5316),
    "Bremen": (53.0793, 8.8017),
    "Hamburg": (53.5511, 9.9937),
    "Hessen": (50.6521, 9.1624),
    "Mecklenburg-Vorpommern": (53.6127, 12.4296),
    "Niedersachsen": (52.6367, 9.8451),
    "Nordrhein-Westfalen": (51.4332, 7.6616),
    "Rheinland-Pfalz": (50.1183, 7.3090),
    "Saarland": (49.3964, 7.0230),
    "Sachsen": (51.1045, 13.2017),
    "Sachsen-Anhalt": (51.9503, 11.6923),
    "Schleswig-Holstein": (54.2194, 9.6961),
    "Thüringen": (51.0110, 10.8453),
}
CITY_COORDS: dict[str, tuple[float, float]] = {
    "Berlin": (52.516274, 13.388942),
    "Bremen": (53.079296, 8.801694),
    "Chemnitz": (50.832185, 12.924239),
    "Darmstadt": (49.872825, 8.651193),
    "Dresden": (51.050409, 13.737262),
    "Duisburg": (51.434408, 6.762329),
    "Düsseldorf": (51.227741, 6.773456),
    "Erfurt": (50.984768, 11.029880),
    "Frankfurt am Main": (50.110922, 8.682127),
    "Hamburg": (53.551085, 9.993682),
    "Hannover": (52.375892, 9.732010),
    "Heilbronn": (49.142693, 9.210880),
    "Kassel": (51.312711, 9.479746),
    "Köln": (50.937531, 6.960279),
    "Leipzig": (51.339695, 12.373075),
    "Lübeck": (53.865467, 10.686559),
    "Magdeburg": (52.120533, 11.627624),
    "Mainz": (49.992862, 8.247253),
    "München": (48.135125, 11.581981),
    "Nürnberg": (49.452030, 11.076750),
    "Offenbach am Main": (50.095636, 8.776095),
    "Osterwieck": (51.966667, 10.716667),
    "Regensburg": (49.013430, 12.101624),
    "Stuttgart": (48.775846, 9.182932),
    "Wiesbaden": (50.078218, 8.239761),
}


@dataclass(frozen=True)
class _Village:
    """What plain `wo=Hessen` / `wo=Sachsen` geocode to (a village, not the state)."""

    bereinigter_ort: str
    lat: float
    lon: float
    towns: frozenset[str]  # postings located in these towns are what the village search returns


# `Hessen` is a village of Osterwieck (Sachsen-Anhalt); `Sachsen` a municipality near Ansbach (Bayern).
VILLAGES: dict[str, _Village] = {
    "hessen": _Village("Hessen (Osterwieck)", 52.0064, 10.7408, frozenset({"hessen", "osterwieck"})),
    "sachsen": _Village(
        "Sachsen b.Ansbach", 49.2902, 10.6553,
        frozenset({"sachsen b.ansbach", "sachsen bei ansbach", "lichtenau", "ansbach"}),
    ),
}

ANGEBOTSART_CODES: dict[str, str] = {
    "1": "ARBEIT",
    "2": "SELBSTAENDIGKEIT",
    "4": "AUSBILDUNG",
    "34": "PRAKTIKUM_TRAINEE",
}

_SEARCH_ROUTES = {"/pc/v6/jobs": "v6", "/pc/v4/jobs": "v4", "/pc/v4/app/jobs": "v4"}
# Routes probed in 2026-08 that are not served: answered like the real gateway (docs/wire_formats.md §1.1, §1.8).
_DEAD_ROUTES: dict[str, int] = {
    "/pc/v5/jobs": 404,
    "/pc/v5/app/jobs": 404,
    "/pc/v3/jobs": 403,
    "/pc/v3/jobdetails/": 404,
    "/pc/v5/jobdetails/": 403,
    "/pc/v6/jobdetails/": 403,
}
DETAIL_PREFIX = "/pc/v4/jobdetails/"


# ----------------------------------------------------------------------------------------------
# Builders for realistic items
# ----------------------------------------------------------------------------------------------


def stable_int(text: str, modulo: int) -> int:
    """Deterministic pseudo-random number from a string, so built items are identical on every run.

    `surrogatepass`: tests send lone surrogates in names and titles on purpose; hashing one must work."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % modulo


def state_enum(state: str) -> str:
    """The v6 region enum of a German state name (`Thüringen` -> `THUERINGEN`)."""
    try:
        return STATE_ENUMS[state]
    except KeyError:
        raise ValueError(f"not a German state name: {state!r} (use e.g. 'Baden-Württemberg')") from None


def city_coords(city: str, state: str, plz: str) -> tuple[float, float]:
    """Coordinates for a city; unknown cities get the state centre nudged by the PLZ (stable)."""
    if city in CITY_COORDS:
        return CITY_COORDS[city]
    lat, lon = STATE_COORDS[state]
    return round(lat + (stable_int(plz, 400) - 200) / 1000, 6), round(lon + (stable_int(plz[::-1], 400) - 200) / 1000, 6)


def location(city: str, plz: str, state: str, *, strasse: str | None = None, hausnummer: str | None = None
             ) -> dict[str, Any]:
    """One v6 `stellenlokationen` element (upper-case region and land enums, as v6 sends them)."""
    adresse: dict[str, Any] = {}
    if strasse:
        adresse["strasse"] = strasse
    if hausnummer:
        adresse["hausnummer"] = hausnummer
    adresse.update({"plz": plz, "ort": city, "region": state_enum(state), "land": "DEUTSCHLAND"})
    lat, lon = city_coords(city, state, plz)
    return {"adresse": adresse, "breite": lat, "laenge": lon}


def make_v6_item(
    refnr: str,
    title: str,
    *,
    published: date,
    state: str,
    city: str,
    plz: str,
    firma: str = "Nordlicht Dienstleistungen GmbH",
    hauptberuf: str | None = None,
    externe_url: str | None = None,
    first_published: date | None = None,
    strasse: str | None = None,
) -> dict[str, Any]:
    """A v6 search item (`ergebnisliste` element) with the fields and value styles seen live in 2026.

    `published` is the current publication (`veroeffentlichungszeitraum.von`); `first_published`
    (`datumErsteVeroeffentlichung`) defaults to it, set it earlier for a re-published ad.
    """
    seconds = stable_int(refnr, 9 * 3600)
    millis = stable_int(refnr[::-1], 1000)
    changed = datetime(published.year, published.month, published.day, 6) + timedelta(seconds=seconds)
    item: dict[str, Any] = {
        "stellenangebotsart": "ARBEIT",
        "stellenangebotsTitel": title,
        "quereinstiegGeeignet": False,
        "arbeitszeitSchichtNachtWochenende": False,
        "arbeitszeitTeilzeitAbend": False,
        "arbeitszeitTeilzeitNachmittag": False,
        "arbeitszeitTeilzeitVormittag": False,
        "arbeitszeitTeilzeitFlexibel": False,
        "arbeitszeitVollzeit": True,
        "eintrittszeitraum": {"von": (published + timedelta(days=14 + stable_int(refnr, 30))).isoformat()},
        "verguetungsangabe": "KEINE_ANGABEN",
        "vertragsdauer": "KEINE_ANGABE",
        "istGeringfuegigeBeschaeftigung": False,
        "stellenlokationen": [location(city, plz, state, strasse=strasse)],
        "homeofficemoeglich": False,
        "veroeffentlichungszeitraum": {"von": published.isoformat()},
        "datumErsteVeroeffentlichung": (first_published or published).isoformat(),
        "aenderungsdatum": f"{changed.isoformat(timespec='seconds')}.{millis:03d}",
    }
    if externe_url:
        item["externeURL"] = externe_url
    if hauptberuf:
        item["hauptberuf"] = hauptberuf
    item["firma"] = firma
    item["referenznummer"] = refnr
    if hauptberuf:
        item["alleBerufe"] = [hauptberuf]
    return item


def _partner_of(url: str) -> tuple[str, str]:
    host = re.sub(r"^https?://(www\.)?", "", url).split("/")[0]
    return host, f"https://www.{host}"


def make_detail(item: dict[str, Any], description: str, **overrides: Any) -> dict[str, Any]:
    """A v4 jobdetails object for a v6 search item (detail names, not v4-search names; §1.6).

    Partner postings (with `externeURL`) usually carry an empty description; pass "" for those.
    `overrides` replace or add top-level keys (e.g. `externeURL=None` removes it).
    """
    refnr = item.get("referenznummer") or item.get("refnr") or ""
    firma = item.get("firma", "")
    customer = base64.b64encode(hashlib.sha256(f"kunde:{firma}".encode()).digest()[:30]).decode("ascii")
    partner_url = item.get("externeURL")
    partner_name, partner_home = _partner_of(partner_url) if partner_url else (
        "arbeitsagentur.de", "http://www.arbeitsagentur.de")
    detail: dict[str, Any] = {
        "stellenangebotsart": item.get("stellenangebotsart", "ARBEIT"),
        "stellenangebotsTitel": item.get("stellenangebotsTitel"),
        "stellenangebotsBeschreibung": description,
        "firma": firma,
    }
    if "hauptberuf" in item:
        detail["hauptberuf"] = item["hauptberuf"]
    detail.update({
        "referenznummer": refnr,
        "arbeitgeberKundennummerHash": customer,
        "aenderungsdatum": item.get("aenderungsdatum"),
        "datumErsteVeroeffentlichung": item.get("datumErsteVeroeffentlichung"),
        "veroeffentlichungszeitraum": copy.deepcopy(item.get("veroeffentlichungszeitraum") or {}),
        "eintrittszeitraum": copy.deepcopy(item.get("eintrittszeitraum") or {}),
        "allianzpartnerName": partner_name,
        "allianzpartnerUrl": partner_home,
    })
    for key in ("arbeitszeitVollzeit", "arbeitszeitTeilzeitVormittag", "arbeitszeitTeilzeitNachmittag",
                "arbeitszeitTeilzeitAbend", "arbeitszeitTeilzeitFlexibel", "arbeitszeitSchichtNachtWochenende",
                "homeofficemoeglich", "homeofficetyp"):
        if key in item:
            detail[key] = item[key]
    if partner_url:
        detail["externeURL"] = partner_url
    detail.update({
        "istArbeitnehmerUeberlassung": bool(item.get("istArbeitnehmerUeberlassung", False)),
        "istBehinderungGefordert": False,
        "istBetreut": not partner_url,
        "istGeringfuegigeBeschaeftigung": bool(item.get("istGeringfuegigeBeschaeftigung", False)),
        "istPrivateArbeitsvermittlung": False,
        "quereinstiegGeeignet": bool(item.get("quereinstiegGeeignet", False)),
        "stellenlokationen": copy.deepcopy(item.get("stellenlokationen") or []),
        "verguetungsangabe": item.get("verguetungsangabe", "KEINE_ANGABEN"),
        "vertragsdauer": item.get("vertragsdauer", "KEINE_ANGABE"),
    })
    for key in ("artDerVerguetung", "gehaltsspanneVon", "gehaltsspanneBis", "alleBerufe"):
        if key in item:
            detail[key] = copy.deepcopy(item[key])
    for key, value in overrides.items():
        if value is None:
            detail.pop(key, None)
        else:
            detail[key] = value
    return detail


def default_description(item: dict[str, Any]) -> str:
    """Text for postings added without a detail record, long enough to count as a real description."""
    title = item.get("stellenangebotsTitel") or item.get("hauptberuf") or "Mitarbeiter (m/w/d)"
    firma = item.get("firma") or "Unser Unternehmen"
    places = [loc.get("adresse", {}).get("ort") for loc in item.get("stellenlokationen") or []]
    where = ", ".join(p for p in places if p) or "unserem Standort"
    return (
        f"**Über uns**\n{firma} sucht zum nächstmöglichen Zeitpunkt Verstärkung in {where}.\n\n"
        f"**Ihre Aufgaben als {title}**\n- Eigenverantwortliche Bearbeitung der anfallenden Aufgaben\n"
        "- Enge Zusammenarbeit mit Kolleginnen und Kollegen im Team\n\n"
        "**Ihr Profil**\n- Abgeschlossene Ausbildung oder vergleichbare Qualifikation\n"
        "- Zuverlässigkeit und Freude an der Arbeit\n\n"
        "**Wir bieten**\nUnbefristeten Arbeitsvertrag, 30 Tage Urlaub und ein kollegiales Umfeld."
    )


def to_v4_item(item: dict[str, Any]) -> dict[str, Any]:
    """Convert a v6 search item to the legacy v4 `stellenangebote` element (docs/wire_formats.md §1.4/§1.5)."""
    out: dict[str, Any] = {}
    if "hauptberuf" in item:
        out["beruf"] = item["hauptberuf"]
    if "stellenangebotsTitel" in item:
        out["titel"] = item["stellenangebotsTitel"]
    if "referenznummer" in item:
        out["refnr"] = item["referenznummer"]
    locations = item.get("stellenlokationen") or []
    if locations:
        first = locations[0]
        adresse = first.get("adresse") or {}
        place: dict[str, Any] = {}
        if adresse.get("plz"):
            place["plz"] = adresse["plz"]
        if adresse.get("ort"):
            place["ort"] = adresse["ort"]
        if adresse.get("strasse"):
            place["strasse"] = " ".join(p for p in (adresse.get("strasse"), adresse.get("hausnummer")) if p)
        if adresse.get("region"):
            place["region"] = ENUM_STATES.get(adresse["region"], adresse["region"])
        if adresse.get("land"):
            place["land"] = "Deutschland" if adresse["land"] == "DEUTSCHLAND" else adresse["land"].title()
        if "breite" in first and "laenge" in first:
            place["koordinaten"] = {"lat": first["breite"], "lon": first["laenge"]}
        out["arbeitsort"] = place
    if "firma" in item:
        out["arbeitgeber"] = item["firma"]
    if (item.get("veroeffentlichungszeitraum") or {}).get("von"):
        out["aktuelleVeroeffentlichungsdatum"] = item["veroeffentlichungszeitraum"]["von"]
    if "aenderungsdatum" in item:
        out["modifikationsTimestamp"] = item["aenderungsdatum"]
    if (item.get("eintrittszeitraum") or {}).get("von"):
        out["eintrittsdatum"] = item["eintrittszeitraum"]["von"]
    if "externeURL" in item:
        out["externeUrl"] = item["externeURL"]
    return out


def encode_refnr(refnr: str, *, padding: str = "strip") -> str:
    """base64(refnr) for the detail route; `padding` is "strip", "keep" or "escaped" (`%3D`)."""
    text = base64.b64encode(refnr.encode("utf-8")).decode("ascii")
    if padding == "strip":
        return text.rstrip("=")
    if padding == "escaped":
        return text.replace("=", "%3D")
    return text


def decode_refnr(segment: str) -> str | None:
    """The refnr a detail path segment addresses, or None when it is not base64 (e.g. a raw refnr)."""
    text = unquote(segment)
    body = text.rstrip("=")
    if not body or len(text) - len(body) > 2 or len(body) % 4 == 1:
        return None
    if not re.fullmatch(r"[A-Za-z0-9+/]+", body):
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


# ----------------------------------------------------------------------------------------------
# Fault queue (shared with the Deutsche Bank fake)
# ----------------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One scripted misbehaviour for requests whose path starts with `path_prefix`."""

    path_prefix: str
    status: int | None = None
    times: int = 1
    body: str | None = None
    truncated_json: bool = False
    drop: bool = False
    retry_after: str | None = None
    match: dict[str, Any] | None = None
    delay_s: float = 0.0
    hits: int = 0

    def matches(self, request: Request, fields: dict[str, str]) -> bool:
        if not request.path.startswith(self.path_prefix):
            return False
        return all(fields.get(str(k)) == str(v) for k, v in (self.match or {}).items())


class FaultQueue:
    """Scripted faults, consumed in the order they were queued by the first request each one matches.

    A fault with `times=n` answers the next n matching requests; later faults wait their turn only
    for requests they match, so faults for different paths do not block each other.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        if fault.status is None and fault.body is None and not (fault.truncated_json or fault.drop):
            raise ValueError("a fault needs a status, a body, truncated_json or drop")
        with self._lock:
            self._faults.append(fault)

    def take(self, request: Request, fields: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(request, fields):
                    fault.hits += 1
                    if fault.hits >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> int:
        """How many scripted answers are still to be given (sum of the remaining `times`)."""
        with self._lock:
            return sum(f.times - f.hits for f in self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def fault_response(
    fault: Fault,
    normal: Callable[[], Response],
    default_body: Callable[[int], Response],
) -> Response:
    """The answer a fault gives. `normal` computes the real answer (for truncation), `default_body`
    the body a status gets when the test did not pass one."""
    if fault.drop:
        return Response(drop_connection=True, delay_s=fault.delay_s)
    if fault.truncated_json:
        real = normal()
        data = real.body if isinstance(real.body, bytes) else str(real.body).encode("utf-8")
        cut = max(1, len(data) // 2)
        resp = Response(status=fault.status or 200, body=data[:cut], content_type=real.content_type)
    elif fault.body is not None:
        resp = Response(status=fault.status or 200, body=fault.body)
    else:
        assert fault.status is not None
        resp = default_body(fault.status)
    if fault.retry_after is not None:
        resp.headers["Retry-After"] = fault.retry_after
    resp.delay_s = fault.delay_s
    return resp


def spring_error(status: int, path: str) -> Response:
    """The Spring gateway's generic error JSON (unrouted paths, 429, 5xx)."""
    reasons = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
               503: "Service Unavailable", 504: "Gateway Timeout"}
    return Response.json_body({
        "timestamp": _now_stamp(),
        "status": status,
        "error": reasons.get(status, "Error"),
        "path": path,
    }, status=status)


def waf_forbidden() -> Response:
    """What the WAF answers when it blocks: a small HTML page, not JSON."""
    page = ("<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
            "<p>Die Anfrage wurde blockiert.</p></body></html>")
    return Response(status=403, body=page, content_type="text/html; charset=utf-8")


def _now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _logref() -> str:
    return hashlib.sha1(_now_stamp().encode()).hexdigest()[:8]


def gateway_error(status: int, *, code: str = INPUT_ERROR_CODE, path: str | None = None,
                  detail: str | None = None) -> Response:
    """The §1.8 error body: `{timestamp, logref, messages: [{code, path?, detail?}]}`."""
    message: dict[str, Any] = {"code": code}
    if path is not None:
        message["path"] = path
    if detail is not None:
        message["detail"] = detail
    return Response.json_body({"timestamp": _now_stamp(), "logref": _logref(), "messages": [message]}, status=status)


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


# ----------------------------------------------------------------------------------------------
# The fake
# ----------------------------------------------------------------------------------------------


@dataclass
class _Posting:
    item: dict[str, Any]
    states: list[str]
    detail: dict[str, Any] | None
    detail_status: int

    @property
    def refnr(self) -> str:
        return str(self.item.get("referenznummer") or self.item.get("refnr"))

    @property
    def published(self) -> date:
        von = (self.item.get("veroeffentlichungszeitraum") or {}).get("von")
        try:
            return date.fromisoformat(von) if von else date.min
        except ValueError:
            return date.min

    @property
    def towns(self) -> set[str]:
        return {_fold(str((loc.get("adresse") or {}).get("ort", ""))) for loc in self.item.get("stellenlokationen") or []}


@dataclass
class _Scope:
    """What a `wo` value geocoded to."""

    kind: str  # "all", "state", "village", "city", "invalid"
    value: str = ""
    wo_output: dict[str, Any] | None = field(default=None)


class FakeJobsuche(LoopbackServer):
    """Fake `rest.arbeitsagentur.de/jobboerse/jobsuche-service`; point the client's base URL at `base_url`.

    Knobs (plain attributes, settable any time):
    * `today`: the server's date; `veroeffentlichtseit=N` keeps postings published on or after today-N.
    * `search_version`: "v6" serves `/pc/v6/jobs` (v4 route 404), "v4" serves `/pc/v4/jobs` (v6 404).
    * `total_override`: report this `maxErgebnisse` instead of the real number of matches.
    * `duplicate_across_pages`: the last item of page 1 is served again at the top of page 2 and all
      later pages shift by one (a posting inserted between page calls). Every item is still served,
      but the last one only on one extra page past what `maxErgebnisse` suggests.
    * `renamed_fields`: served item key -> new name ("" drops the key), applied to the served shape
      (v6 or v4 names), e.g. `{"stellenangebotsTitel": ""}`.
    """

    def __init__(self, *, today: date, search_version: str = "v6", api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        if search_version not in ("v6", "v4"):
            raise ValueError("search_version must be 'v6' or 'v4'")
        self.today = today
        self.search_version = search_version
        self.api_key = api_key
        self.total_override: int | None = None
        self.duplicate_across_pages = False
        self.renamed_fields: dict[str, str] = {}
        self.faults = FaultQueue()
        self._postings: dict[str, _Posting] = {}
        self._state_lock = threading.RLock()

    # -- setup ---------------------------------------------------------------------------------

    def add(self, item: dict[str, Any], *, state: str, detail: dict[str, Any] | None = None,
            detail_status: int = 200) -> None:
        """Make `item` findable under `state`'s query. Adding the same refnr again under another state
        makes it appear in both state queries (multi-site postings); item and detail are replaced.

        `detail=None` serves a generated v4 detail with a generic description; `detail_status` != 200
        makes the detail route answer that status (404 = gone although still in search).
        """
        state_enum(state)  # validates the name
        refnr = item.get("referenznummer") or item.get("refnr")
        if not refnr:
            raise ValueError("item has no referenznummer")
        with self._state_lock:
            existing = self._postings.get(refnr)
            states = list(existing.states) if existing else []
            if state not in states:
                states.append(state)
            self._postings[refnr] = _Posting(copy.deepcopy(item), states, copy.deepcopy(detail), detail_status)

    def reset(self) -> None:
        """Forget postings, faults, knobs and the request log, so one started server can serve many tests
        (stopping a server costs up to half a second)."""
        with self._state_lock:
            self._postings.clear()
        self.faults.clear()
        self.total_override = None
        self.duplicate_across_pages = False
        self.renamed_fields = {}
        with self._lock:
            self.requests.clear()

    def remove(self, refnr: str) -> None:
        """The posting disappears from search and details (expired)."""
        with self._state_lock:
            self._postings.pop(refnr, None)

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
        """Queue a fault for the next `times` requests whose path starts with `path_prefix` and whose
        query parameters equal every entry of `match` (compared as strings).

        `status` alone answers that status with a realistic body (403 WAF HTML, 404 not-found JSON,
        400 gateway body, 429/5xx gateway JSON); `body` overrides the body (status default 200, e.g. a
        `messages`-only body for a detail); `truncated_json` cuts the real answer in half (status
        default 200); `drop` closes the connection without an answer; `retry_after` sets the header;
        `delay_s` delays the answer (read timeouts).
        """
        self.faults.add(Fault(path_prefix, status, times, body, truncated_json, drop, retry_after, match, delay_s))

    # -- log helpers ---------------------------------------------------------------------------

    def searches(self) -> list[tuple[str | None, int | str | None, int | str | None, int | str | None]]:
        """(wo, page, size, veroeffentlichtseit) of every search request received, faulted ones included,
        in arrival order; numbers are ints when they parse."""
        with self._lock:
            reqs = list(self.requests)
        out = []
        for req in reqs:
            if req.path in _SEARCH_ROUTES:
                q = req.query
                out.append((q.get("wo"), _num(q.get("page")), _num(q.get("size")), _num(q.get("veroeffentlichtseit"))))
        return out

    def detail_calls(self) -> list[str]:
        """The refnr of every detail request received, in order (the raw path segment when it was not
        valid base64, e.g. a raw refnr)."""
        out = []
        for req in self.requests_to(DETAIL_PREFIX):
            segment = req.path[len(DETAIL_PREFIX):]
            out.append(decode_refnr(segment) or segment)
        return out

    # -- serving -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        fault = self.faults.take(request, dict(request.query))
        if fault is not None:
            return fault_response(fault, lambda: self._serve(request), lambda s: self._status_body(s, request))
        return self._serve(request)

    def _status_body(self, status: int, request: Request) -> Response:
        if status == 403:
            return waf_forbidden()
        if status == 404 and request.path.startswith(DETAIL_PREFIX):
            return gateway_error(404, code=NOT_FOUND_CODE)
        if status == 400:
            return gateway_error(400)
        return spring_error(status, request.path)

    def _serve(self, request: Request) -> Response:
        if request.headers.get("x-api-key") != self.api_key or not request.headers.get("user-agent", "").strip():
            return waf_forbidden()
        path = request.path
        for prefix, status in _DEAD_ROUTES.items():
            if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
                return waf_forbidden() if status == 403 else spring_error(status, path)
        if path in _SEARCH_ROUTES:
            if request.method != "GET":
                return spring_error(405, path)
            if _SEARCH_ROUTES[path] != self.search_version:
                return spring_error(404, path)
            return self._search(request)
        if path.startswith(DETAIL_PREFIX):
            if request.method != "GET":
                return spring_error(405, path)
            return self._detail(path[len(DETAIL_PREFIX):])
        return spring_error(404, path)

    def _resolve_wo(self, wo: str | None) -> _Scope:
        if wo is None or not wo.strip():
            return _Scope("all")
        text = " ".join(wo.split())
        folded = text.casefold()
        if folded == "deutschland":
            lat, lon = 51.1642, 10.4541
            return _Scope("all", wo_output=_wo_output("Deutschland", lat, lon))
        if folded.startswith("bundesland "):
            state = _state_by_name(text[len("bundesland "):])
            if state is None:
                return _Scope("invalid", wo_output=_wo_output(text, None, None))
            return _Scope("state", state, _wo_output(state, *STATE_COORDS[state]))
        if folded in VILLAGES:
            village = VILLAGES[folded]
            return _Scope("village", folded, _wo_output(village.bereinigter_ort, village.lat, village.lon))
        state = _state_by_name(text)
        if state is not None:
            return _Scope("state", state, _wo_output(state, *STATE_COORDS[state]))
        with self._state_lock:
            for posting in self._postings.values():
                for loc in posting.item.get("stellenlokationen") or []:
                    ort = str((loc.get("adresse") or {}).get("ort", ""))
                    if _fold(ort) == _fold(text):
                        return _Scope("city", _fold(text), _wo_output(ort, loc.get("breite"), loc.get("laenge")))
        if text in CITY_COORDS:
            return _Scope("city", _fold(text), _wo_output(text, *CITY_COORDS[text]))
        return _Scope("invalid", wo_output=_wo_output(text, None, None))

    def _in_scope(self, posting: _Posting, scope: _Scope) -> bool:
        if scope.kind == "all":
            return True
        if scope.kind == "state":
            return scope.value in posting.states
        if scope.kind == "village":
            return bool(posting.towns & VILLAGES[scope.value].towns)
        if scope.kind == "city":
            return scope.value in posting.towns
        return False

    def _search(self, request: Request) -> Response:
        q = request.query
        page = _int_param(q.get("page"), default=1)
        if page is None or page < 1:
            return gateway_error(400, path="page", detail="Wert ungültig")
        size = _int_param(q.get("size"), default=DEFAULT_PAGE_SIZE)
        if size is None or size < 1:
            return gateway_error(400, path="size", detail="Wert ungültig")
        if size > MAX_PAGE_SIZE:
            return gateway_error(400, path="size", detail=f"Wert muss kleiner oder gleich {MAX_PAGE_SIZE} sein")
        if page * size > RESULT_WINDOW:
            return gateway_error(400, path="page", detail=f"page * size darf {RESULT_WINDOW} nicht überschreiten")
        since = _int_param(q.get("veroeffentlichtseit"), default=-1)
        if since is None or since > 100 or (since < 0 and q.get("veroeffentlichtseit") is not None):
            return gateway_error(400, path="veroeffentlichtseit", detail="Wert ungültig")
        art = q.get("angebotsart")
        if art is not None and art not in ANGEBOTSART_CODES:
            return gateway_error(400, path="angebotsart", detail="Wert ungültig")

        scope = self._resolve_wo(q.get("wo"))
        with self._state_lock:
            postings = list(self._postings.values())
        cutoff = self.today - timedelta(days=since) if since >= 0 else date.min
        matched = [
            p for p in postings
            if self._in_scope(p, scope)
            and p.published >= cutoff
            and (art is None or p.item.get("stellenangebotsart", "ARBEIT") == ANGEBOTSART_CODES[art])
        ]
        matched.sort(key=lambda p: (-p.published.toordinal(), p.refnr))
        start = (page - 1) * size
        if self.duplicate_across_pages and page >= 2:
            start -= 1
        page_items = [p.item for p in matched[start:start + size]]
        served = [self._serve_item(i) for i in page_items]

        envelope: dict[str, Any] = {}
        list_key = "ergebnisliste" if self.search_version == "v6" else "stellenangebote"
        if served:
            envelope[list_key] = served
        envelope["maxErgebnisse"] = self.total_override if self.total_override is not None else len(matched)
        envelope["page"] = page
        envelope["size"] = size
        if scope.wo_output is not None:
            envelope["woOutput"] = scope.wo_output
        if matched:
            envelope["facetten"] = _facets([p.item for p in matched])
        return Response.json_body(envelope)

    def _serve_item(self, item: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(item) if self.search_version == "v6" else to_v4_item(item)
        for old, new in self.renamed_fields.items():
            if old in out:
                value = out.pop(old)
                if new:
                    out[new] = value
        return out

    def _detail(self, segment: str) -> Response:
        refnr = decode_refnr(segment)
        with self._state_lock:
            posting = self._postings.get(refnr) if refnr else None
        if posting is None or posting.detail_status == 404:
            return gateway_error(404, code=NOT_FOUND_CODE)
        if posting.detail_status != 200:
            return spring_error(posting.detail_status, DETAIL_PREFIX + segment)
        detail = posting.detail if posting.detail is not None else make_detail(
            posting.item, default_description(posting.item))
        return Response.json_body(detail)


def _state_by_name(text: str) -> str | None:
    """Exact German spelling, case-insensitive: `Muenchen`-style transliterations do not geocode."""
    folded = _fold(text)
    return next((s for s in STATE_ENUMS if s.casefold() == folded), None)


def _wo_output(name: str, lat: float | None, lon: float | None) -> dict[str, Any]:
    if lat is None or lon is None:
        return {"bereinigterOrt": name, "suchmodus": "UNGUELTIG"}
    return {"bereinigterOrt": name, "suchmodus": "UMKREISSUCHE", "koordinaten": [{"lat": lat, "lon": lon}]}


def _int_param(raw: str | None, *, default: int) -> int | None:
    if raw is None:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _num(raw: str | None) -> int | str | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def _facets(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Facet counts over all matches, in the v6 object shape `{name: {counts, maxCount}}`."""
    total = len(items)

    def facet(counts: dict[str, int]) -> dict[str, Any]:
        return {"counts": {k: v for k, v in counts.items() if v}, "maxCount": total}

    towns: dict[str, int] = {}
    for item in items:
        locs = item.get("stellenlokationen") or []
        ort = (locs[0].get("adresse") or {}).get("ort") if locs else None
        if ort:
            towns[ort] = towns.get(ort, 0) + 1
    teilzeit = ("arbeitszeitTeilzeitVormittag", "arbeitszeitTeilzeitNachmittag", "arbeitszeitTeilzeitAbend",
                "arbeitszeitTeilzeitFlexibel")
    arbeitszeit = {
        "vz": sum(bool(i.get("arbeitszeitVollzeit")) for i in items),
        "tz": sum(any(i.get(k) for k in teilzeit) for i in items),
        "snw": sum(bool(i.get("arbeitszeitSchichtNachtWochenende")) for i in items),
        "ho": sum(bool(i.get("homeofficemoeglich")) for i in items),
        "mj": sum(bool(i.get("istGeringfuegigeBeschaeftigung")) for i in items),
    }
    zeitarbeit = sum(bool(i.get("istArbeitnehmerUeberlassung")) for i in items)
    home = sum(bool(i.get("homeofficemoeglich")) for i in items)
    partner = sum(bool(i.get("externeURL")) for i in items)
    return {
        "arbeitsort": facet(dict(sorted(towns.items(), key=lambda kv: (-kv[1], kv[0])))),
        "arbeitszeit": facet(arbeitszeit),
        "zeitarbeit": facet({"false": total - zeitarbeit, "true": zeitarbeit}),
        "befristung": facet({
            "1": sum(i.get("vertragsdauer") == "BEFRISTET" for i in items),
            "2": sum(i.get("vertragsdauer") == "UNBEFRISTET" for i in items),
        }),
        "homeoffice": facet({"true": home, "false": total - home}),
        "externestellenboersen": facet({"true": partner, "false": total - partner}),
    }
