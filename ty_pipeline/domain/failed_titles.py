"""Dynamic-partition keys for failed titles.

A key must be a safe, stable string: Dagster shows it in URLs, the UI and the CLI, and a title can hold
anything (slashes, brackets, commas, emoji). So the key is a short hash of the title key (unique and
stable) followed by a readable slug; the table `berufenet_failed_titles` maps keys back to titles.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

PARTITIONS_NAME = "berufenet_failed_titles"
DEFAULT_MAX_PARTITIONS = 5_000
"""Well below the ~35,000 dynamic partitions where the Dagster UI starts to stall (docs/dagster_pitfalls.md §C1)."""
HASH_CHARS = 10
SLUG_CHARS = 48
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_KEY = re.compile(rf"^[0-9a-f]{{{HASH_CHARS}}}(?:-[a-z0-9]+(?:-[a-z0-9]+)*)?$")


def slug(text: str, max_chars: int = SLUG_CHARS) -> str:
    """ASCII letters and digits joined by single hyphens: "Koch/Köchin (Kantine)" -> "koch-kochin-kantine"."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(ch))
    out = _NOT_SLUG.sub("-", plain).strip("-")
    return out[:max_chars].rstrip("-")


def partition_key_for(title_key: str) -> str:
    """`<10 hex of sha256(title_key)>-<slug>`: at most 59 characters, only [0-9a-z-]."""
    digest = hashlib.sha256(title_key.encode("utf-8")).hexdigest()[:HASH_CHARS]
    readable = slug(title_key)
    return f"{digest}-{readable}" if readable else digest


def is_partition_key(value: str) -> bool:
    return bool(_KEY.match(value))
