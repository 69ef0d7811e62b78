"""The source-independent shape of one fetched posting, before it is written to the warehouse."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import date
from enum import StrEnum
from typing import Any

from ty_pipeline.domain.text_clean import clean_text, strip_unstorable

# The longest external id the warehouse stores, in UTF-8 bytes. (source, external_id) is a unique btree
# key, and a PostgreSQL btree entry holds at most 2,704 bytes (a third of an 8 kB page; "index row size
# ... exceeds btree version 4 maximum"): with the 32-character source and the tuple header an id fits up to
# ~2,650 bytes of incompressible text. 2,048 leaves room below that limit and is far beyond any real id
# (Jobsuche refnr ~20 characters, Deutsche Bank ids ~6), so only malformed input meets it. The limit is in
# bytes, not characters: 2,048 umlauts or emoji would be 4-8 kB. `postings.external_id` is declared
# VARCHAR of this many characters, which every id within the byte limit satisfies.
MAX_EXTERNAL_ID_BYTES = 2048
# How much of a refused id names it in reports (the check's table, the failure message, the run log).
_SHOWN_ID_CHARS = 80


def external_id_bytes(external_id: str) -> int:
    """The id's length as the database stores it (UTF-8); a lone surrogate counts, it does not raise."""
    return len(external_id.encode("utf-8", "surrogatepass"))


def external_id_problem(external_id: str) -> str | None:
    """Why the warehouse cannot store a posting with this id, or None when it can.

    Checked before the write on every backend alike: SQLite would store any length, and PostgreSQL would
    refuse the row only inside the chunk's transaction, after costing a row-by-row retry of the chunk.
    """
    size = external_id_bytes(external_id)
    if size <= MAX_EXTERNAL_ID_BYTES:
        return None
    return (f"external id is {size:,} bytes long (UTF-8); the warehouse indexes (source, external_id) "
            f"and stores ids of at most {MAX_EXTERNAL_ID_BYTES:,} bytes")


def shown_external_id(external_id: str) -> str:
    """The id as reports name a posting: whole when storable, else its start and its length."""
    if external_id_bytes(external_id) <= MAX_EXTERNAL_ID_BYTES:
        return external_id
    return f"{external_id[:_SHOWN_ID_CHARS]}… ({len(external_id):,} characters)"


class Source(StrEnum):
    ARBEITSAGENTUR = "arbeitsagentur"
    DEUTSCHE_BANK = "deutsche_bank"


class Origin(StrEnum):
    """Where a row came from: the live API or the offline sample files shipped in `data/sample`."""

    API = "api"
    SAMPLE = "sample"


@dataclass(frozen=True)
class PostingRecord:
    source: Source
    external_id: str
    title: str | None
    employer: str | None = None
    beruf: str | None = None
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    external_url: str | None = None
    partner_url: str | None = None
    published_date: date | None = None
    first_published_date: date | None = None
    origin: Origin = Origin.API
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def content_hash(self) -> str:
        """Hash of everything a reader can see, so a re-fetch can tell "changed" from "seen again"."""
        # A shallow field dict, not `dataclasses.asdict`: that deep-copied `raw` only to replace it, and
        # was two thirds of the CPU of storing a day (issue #13). Same JSON, so the same hashes as before.
        payload = {f.name: getattr(self, f.name) for f in _FIELDS}
        text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


_FIELDS = fields(PostingRecord)


def parse_iso_date(value: Any) -> date | None:
    """Dates arrive as `YYYY-MM-DD`, sometimes with a time part; anything else is treated as absent."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _scalar_text(value: Any) -> str | None:
    """A JSON scalar as text; objects and lists where a string belongs are absent, not their repr."""
    if value is None or isinstance(value, (dict, list, tuple, set, bool)):
        return None
    return value if isinstance(value, str) else str(value)


def clean_str(value: Any) -> str | None:
    """Text fields from the APIs: entities decoded once, control characters removed, stripped, and the
    `KEINE_ANGABE(N)` enums read as absent (docs/wire_formats.md §1.5; issue #9 defects 1 and 10)."""
    raw = _scalar_text(value)
    if raw is None:
        return None
    text = clean_text(raw).strip()
    if not text or text.upper() in {"KEINE_ANGABE", "KEINE_ANGABEN"}:
        return None
    return text


def clean_url(value: Any) -> str | None:
    """URLs from the APIs: control characters removed and stripped, but never entity-decoded."""
    raw = _scalar_text(value)
    if raw is None:
        return None
    return strip_unstorable(raw).strip() or None
