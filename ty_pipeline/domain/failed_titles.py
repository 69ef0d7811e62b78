"""Dynamic-partition keys for failed titles: the title itself, made safe for Dagster.

Every UI widget cuts long keys in the middle, so the key starts with the title and carries a
disambiguator (` ~` and 6 hex of the title key's hash) only when another title already holds the
readable form. The key is chosen once, when the title first fails, and stored in
`berufenet_failed_titles.partition_key`, which maps it back to the title; it is never recomputed.

What Dagster 1.13 accepts: dynamic partition keys are not validated at all when added; static keys
refuse "..." and control characters, multi-partition dimensions also "|", ",", "[" and "]". The UI's
partition-selection syntax uses "," (list), "[...]" (range), "*" (wildcard) and quotes any key with a
character outside `[-a-zA-Z0-9_:/@]` (spaces and umlauts are picked from the list fine; typed by hand
such a key needs double quotes). So a key keeps letters of any script (umlauts, ß), digits, spaces and
`- / ( ) & + . : ' _ @`, collapses runs of dots, and replaces everything else with a space.

Keys before this scheme were `<10 hex of sha256(title_key)>-<ascii slug>` (`6ffb3286ef-junior-notfallsanitaeter`);
`legacy_partition_key` recomputes them so old registrations can be found and replaced.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Container

PARTITIONS_NAME = "berufenet_failed_titles"
DEFAULT_MAX_PARTITIONS = 5_000
"""Well below the ~35,000 dynamic partitions where the Dagster UI starts to stall (docs/dagster_pitfalls.md §C1)."""
TITLE_CHARS = 48
"""Readable part of a key; with the disambiguator at most 56 characters (the column holds 64)."""
DISAMBIGUATOR_HEX = 6
FALLBACK_TITLE = "Titel"  # a title with no letters or digits at all ("???") still gets a readable key
_KEEP_PUNCT = frozenset("-/()&+.:'_@ ")
_DOTS = re.compile(r"\.{2,}")
_EDGE = "-/&+.:'_@ "

# The previous scheme (kept to recognise and migrate old keys).
LEGACY_HASH_CHARS = 10
LEGACY_SLUG_CHARS = 48
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_LEGACY_KEY = re.compile(rf"^[0-9a-f]{{{LEGACY_HASH_CHARS}}}(?:-[a-z0-9]+(?:-[a-z0-9]+)*)?$")


def _kept(ch: str) -> bool:
    return ch in _KEEP_PUNCT or unicodedata.category(ch)[0] in "LN"


def readable_key(title: str, max_chars: int = TITLE_CHARS) -> str:
    """The title as a partition key: "Koch/Köchin, Kantine [Teilzeit]" -> "Koch/Köchin Kantine Teilzeit".

    Umlauts and case stay (NFC, so a decomposed "o" + diaeresis becomes "ö"); longer titles are cut at a
    word boundary when one is near the limit, so the key ends in a whole word.
    """
    text = "".join(ch if _kept(ch) else " " for ch in unicodedata.normalize("NFC", title))
    text = _DOTS.sub(".", " ".join(text.split())).strip(_EDGE)
    if len(text) > max_chars:
        cut = text[: max_chars + 1]
        space = cut.rfind(" ")
        text = cut[:space] if space >= max_chars // 2 else text[:max_chars]
        text = text.strip(_EDGE)
    # A parenthesis cut off at the limit would read as a typo; drop the unmatched opener.
    if text.count("(") > text.count(")"):
        text = text[: text.rfind("(")].strip(_EDGE) or text.replace("(", "").strip(_EDGE)
    return text or FALLBACK_TITLE


def key_choices(title: str, title_key: str) -> list[str]:
    """The keys a title may get, in order of preference: readable, ` ~<6 hex>`, ` ~<10 hex>`."""
    base = readable_key(title)
    digest = hashlib.sha256(title_key.encode("utf-8")).hexdigest()
    return [base, f"{base} ~{digest[:DISAMBIGUATOR_HEX]}", f"{base} ~{digest[:LEGACY_HASH_CHARS]}"]


def partition_key_for(title: str, title_key: str, taken: Container[str] = ()) -> str:
    """The readable key, or `<readable> ~<6 hex>` when another title holds the readable one already.

    `taken` holds the keys of *other* titles. Should even the disambiguated key be taken (a 1 in 16 million
    hash prefix clash), the 10-hex form is used.
    """
    choices = key_choices(title, title_key)
    return next((key for key in choices if key not in taken), choices[-1])


def is_partition_key(value: str) -> bool:
    """Could Dagster and its UI take `value` as a key of this scheme? (Non-empty, short, only kept characters.)"""
    return (
        0 < len(value) <= TITLE_CHARS + 3 + LEGACY_HASH_CHARS
        and value == value.strip()
        and "..." not in value
        and all(_kept(ch) or ch == "~" for ch in value)
    )


def _legacy_slug(text: str, max_chars: int = LEGACY_SLUG_CHARS) -> str:
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(ch))
    out = _NOT_SLUG.sub("-", plain).strip("-")
    return out[:max_chars].rstrip("-")


def legacy_partition_key(title_key: str) -> str:
    """The key the previous scheme gave this title: `<10 hex of sha256(title_key)>-<ascii slug>`."""
    digest = hashlib.sha256(title_key.encode("utf-8")).hexdigest()[:LEGACY_HASH_CHARS]
    readable = _legacy_slug(title_key)
    return f"{digest}-{readable}" if readable else digest


def is_legacy_key(value: str) -> bool:
    """Shaped like a key of the previous scheme (the sensor replaces such registrations)."""
    return bool(_LEGACY_KEY.match(value))


OPEN_TITLES_SHOWN = 25
_STATUS_REASONS = {
    "no_match": "nearest catalog name below the verify threshold",
    "llm_rejected": "the LLM said none of the candidates is this job",
    "embedding_unverified": "uncertain band, LLM verification switched off",
    "llm_unavailable": "uncertain band, the LLM was unavailable",
    "error": "the classification failed",
}


def failure_reason(status: str, error: str | None) -> str:
    """Why a title is unresolved: the recorded error (a retry's rejection names the candidates), else what
    its status means."""
    if error:
        return error
    return _STATUS_REASONS.get(status, status)


def open_titles_rows(titles: list[tuple[str, str, int, str, str | None]]) -> list[dict[str, object]]:
    """(partition_key, title, postings, status, error) -> the rows of the "open failed titles" table, in the
    caller's order (most postings first), partition key last: it is what one picks in the backfill dialog."""
    return [
        {"title": title, "postings": postings, "status": status, "last failure": failure_reason(status, error),
         "partition key": key}
        for key, title, postings, status, error in titles
    ]
