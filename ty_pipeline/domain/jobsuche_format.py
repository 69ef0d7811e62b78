"""Parsing of Jobsuche (Bundesagentur für Arbeit) responses, v6 search shape first, v4 still read.

Search moved from `/pc/v4/jobs` (`stellenangebote`, `refnr`, `titel`, ...) to `/pc/v6/jobs`
(`ergebnisliste`, `referenznummer`, `stellenangebotsTitel`, ...) in August 2026; old fixtures and
a possible rollback keep the v4 reader alive (docs/wire_formats.md §1.4-1.6).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

from ty_pipeline.domain.posting_record import (
    Origin,
    PostingRecord,
    Source,
    clean_str,
    clean_url,
    parse_iso_date,
)
from ty_pipeline.domain.states import canonical_state
from ty_pipeline.domain.text_clean import clean_payload

PUBLIC_POSTING_URL = "https://www.arbeitsagentur.de/jobsuche/jobdetail/{refnr}"


class MalformedResponse(ValueError):
    """The payload is JSON but not a search/detail response we can read."""


@dataclass(frozen=True)
class SearchPage:
    items: list[dict[str, Any]]
    total: int | None  # `maxErgebnisse`; None when the API did not say
    shape: str  # "v6", "v4" or "empty"


def parse_search_page(payload: Any) -> SearchPage:
    """Read one search page of either shape. v6 omits `ergebnisliste` entirely when nothing matched."""
    if not isinstance(payload, dict):
        raise MalformedResponse(f"search response is {type(payload).__name__}, expected an object")
    total = _as_int(payload.get("maxErgebnisse"))
    if "ergebnisliste" in payload:
        items, shape = payload["ergebnisliste"], "v6"
    elif "stellenangebote" in payload:
        items, shape = payload["stellenangebote"], "v4"
    elif "messages" in payload and not payload.get("maxErgebnisse"):
        raise MalformedResponse(f"search answered with error messages: {payload['messages']!r}")
    else:
        items, shape = [], "empty"
    if items is None:
        items = []
    if not isinstance(items, list):
        raise MalformedResponse(f"search result list is {type(items).__name__}, expected a list")
    return SearchPage(items=[i for i in items if isinstance(i, dict)], total=total, shape=shape)


def item_refnr(item: dict[str, Any]) -> str | None:
    return clean_str(item.get("referenznummer") or item.get("refnr"))


def normalize_search_item(
    item: dict[str, Any], *, state_hint: str | None = None, origin: Origin = Origin.API
) -> PostingRecord:
    """Turn a v6 or v4 search item into a PostingRecord.

    `state_hint` is the state whose query found the item; it is used only when the item carries no
    recognisable region (the region field is optional in both shapes).

    Every string is made storable here, once (docs/wire_formats.md §1.5; see domain/text_clean.py).
    An item without a readable publication date is malformed: it cannot be placed in any partition.
    """
    if not isinstance(item, dict):
        raise MalformedResponse(f"search item is {type(item).__name__}, expected an object")
    item = clean_payload(item)
    refnr = item_refnr(item)
    if not refnr:
        raise MalformedResponse("search item without referenznummer/refnr")
    if "referenznummer" in item or "stellenlokationen" in item or "stellenangebotsTitel" in item:
        record = _normalize_v6(item, refnr, state_hint, origin)
    else:
        record = _normalize_v4(item, refnr, state_hint, origin)
    if record.published_date is None:
        raise MalformedResponse(f"search item {refnr} has no readable publication date")
    return record


def _obj(value: Any) -> dict[str, Any]:
    """A nested object, or {} when the field is missing or has another type."""
    return value if isinstance(value, dict) else {}


def _first_obj(value: Any) -> dict[str, Any]:
    return _obj(value[0]) if isinstance(value, list) and value else {}


def _normalize_v6(item: dict[str, Any], refnr: str, state_hint: str | None, origin: Origin) -> PostingRecord:
    first = _first_obj(item.get("stellenlokationen"))
    address = _obj(first.get("adresse"))
    period = _obj(item.get("veroeffentlichungszeitraum"))
    published = parse_iso_date(period.get("von")) or parse_iso_date(item.get("datumErsteVeroeffentlichung"))
    hauptberuf = clean_str(item.get("hauptberuf"))
    return PostingRecord(
        source=Source.ARBEITSAGENTUR,
        external_id=refnr,
        title=clean_str(item.get("stellenangebotsTitel")) or hauptberuf,
        employer=clean_str(item.get("firma")),
        beruf=hauptberuf,
        city=clean_str(address.get("ort")),
        postal_code=clean_str(address.get("plz")),
        state=canonical_state(clean_str(address.get("region"))) or state_hint,
        country=_country(address.get("land")),
        latitude=_as_float(first.get("breite")),
        longitude=_as_float(first.get("laenge")),
        external_url=PUBLIC_POSTING_URL.format(refnr=refnr),
        partner_url=clean_url(item.get("externeURL") or item.get("externeUrl")),
        published_date=published,
        first_published_date=parse_iso_date(item.get("datumErsteVeroeffentlichung")) or published,
        origin=origin,
        raw=item,
    )


def _normalize_v4(item: dict[str, Any], refnr: str, state_hint: str | None, origin: Origin) -> PostingRecord:
    place = _obj(item.get("arbeitsort"))
    coords = _obj(place.get("koordinaten"))
    beruf = clean_str(item.get("beruf"))
    published = parse_iso_date(item.get("aktuelleVeroeffentlichungsdatum"))
    return PostingRecord(
        source=Source.ARBEITSAGENTUR,
        external_id=refnr,
        title=clean_str(item.get("titel")) or beruf,
        employer=clean_str(item.get("arbeitgeber")),
        beruf=beruf,
        city=clean_str(place.get("ort")),
        postal_code=clean_str(place.get("plz")),
        state=canonical_state(clean_str(place.get("region"))) or state_hint,
        country=_country(place.get("land")),
        latitude=_as_float(coords.get("lat")),
        longitude=_as_float(coords.get("lon")),
        external_url=PUBLIC_POSTING_URL.format(refnr=refnr),
        partner_url=clean_url(item.get("externeUrl") or item.get("externeURL")),
        published_date=published,
        first_published_date=published,
        origin=origin,
        raw=item,
    )


def encode_refnr(refnr: str) -> str:
    """The detail route takes base64(refnr) without padding (the raw refnr answers 404)."""
    return base64.b64encode(refnr.encode("utf-8")).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class DetailContent:
    description: str | None  # raw text as delivered (may contain markdown or agency HTML)
    partner_url: str | None  # `externeURL`: the text lives on a partner board
    not_found: bool  # the API says the posting does not exist (any more)


def parse_details(payload: Any) -> DetailContent:
    """Read a v4 jobdetails object; a `messages`-only body (even with HTTP 200) means not found.

    The description is made storable here but not entity-decoded: `clean_description` decodes it once.
    """
    if not isinstance(payload, dict):
        raise MalformedResponse(f"detail response is {type(payload).__name__}, expected an object")
    payload = clean_payload(payload)
    if "messages" in payload and not payload.get("referenznummer") and not payload.get("refnr"):
        messages = payload.get("messages")
        codes = {str(m.get("code")) for m in messages if isinstance(m, dict)} if isinstance(messages, list) else set()
        if not codes or "STELLENANGEBOT_NICHT_GEFUNDEN" in codes:
            return DetailContent(description=None, partner_url=None, not_found=True)
        raise MalformedResponse(f"detail answered with error messages: {sorted(codes)}")
    text = payload.get("stellenangebotsBeschreibung")
    if not isinstance(text, str) or not text.strip():
        text = payload.get("stellenbeschreibung")  # pre-2024 detail shape
    description = text.strip() if isinstance(text, str) and text.strip() else None
    partner = clean_url(payload.get("externeURL") or payload.get("externeUrl"))
    return DetailContent(description=description, partner_url=partner, not_found=False)


def _country(value: Any) -> str | None:
    text = clean_str(value)
    if text and text.upper() == "DEUTSCHLAND":
        return "Deutschland"
    return text


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return None


def _as_float(value: Any) -> float | None:
    """A coordinate; NaN and infinities (JSON `NaN`, `1e999`) are absent, not stored."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if value is not None and value != "" else None
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None
