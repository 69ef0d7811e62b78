"""Make strings from the job APIs storable and readable, once, where the answers are parsed.

Two faults come from the wire as text (issue #9):

* Control characters. PostgreSQL rejects NUL in text (psycopg2: "A string literal cannot contain NUL"),
  which rolled back a whole upsert chunk; other C0 controls, DEL and C1 controls are invisible junk
  that break prompts and CSV exports. Lone UTF-16 surrogates (JSON `"\\ud800"`) cannot be encoded as
  UTF-8 at all, so neither psycopg2 nor sqlite3 can store them. All of these are removed; tab and
  newline stay (descriptions keep their paragraphs), a carriage return becomes a newline.
* HTML entities. Deutsche Bank titles arrive as `Funds Transfer Pricing &amp; ...`. Text fields are
  unescaped exactly once: `&amp;amp;` becomes `&amp;`, because that is what the source literally wrote,
  and a second pass would turn a written-out `&lt;` into a real `<` (a prompt delimiter, say). Only
  entities closed by `;` count, so `R&D`, `AT&T` or a URL's `&copy=1` are left alone.

URLs are only stripped, never unescaped (`&amp;` inside a URL was not meant for us to decode).

A third fault comes as a number: Python's JSON decoder accepts `NaN` and `Infinity`, which are not
JSON; PostgreSQL's json type and strict readers reject them, so the row would be lost. They become null.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any

# Controls that Python (and a reader) treat as white space become a space, so words do not run together.
_SPACE_LIKE = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
# C0 controls except tab (09) and newline (0A), DEL, C1 controls, and the surrogate range.
_UNSTORABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_CARRIAGE_RETURN = re.compile("\r\n?")
# A named, decimal or hex character reference closed by ";" (the form HTML5 requires for new text).
_ENTITY = re.compile(r"&(?:#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,7}|[A-Za-z][A-Za-z0-9]{1,31});")


def strip_unstorable(text: str) -> str:
    """Remove control characters (tab and newline excepted) and lone surrogates.

    CR becomes LF and the white-space-like controls (VT, FF, the separators 1C-1F, NEL) a space.
    """
    if "\r" in text:
        text = _CARRIAGE_RETURN.sub("\n", text)
    return _UNSTORABLE.sub("", _SPACE_LIKE.sub(" ", text))


def unescape_entities(text: str) -> str:
    """Decode `&amp;`, `&#228;`, `&#x2013;` ... exactly once; unknown names stay as written."""
    if "&" not in text:
        return text
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def clean_text(text: str) -> str:
    """A text field from an API: entities decoded once, then nothing left that cannot be stored.

    Stripping runs after decoding, so a `&#1;` or `&#xd800;` cannot smuggle a control character in.
    """
    return strip_unstorable(unescape_entities(text))


def clean_payload(value: Any) -> Any:
    """A decoded JSON answer with every string (keys too) made storable, for `raw_json` and parsing.

    Nothing is unescaped here: the raw payload is kept as the source sent it, minus what cannot be stored.
    """
    if isinstance(value, str):
        return strip_unstorable(value)
    if isinstance(value, dict):
        return {(strip_unstorable(k) if isinstance(k, str) else k): clean_payload(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_payload(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
