"""Showing endpoint URLs without their secrets.

Every URL that can reach a log line, an exception, run metadata or the UI goes through
`redact_url` first: user names, passwords, paths, query strings and fragments can carry tokens
(`http://user:secret@host`, `?api_key=...`), while scheme, host and port are what an operator
needs to tell which endpoint failed. Pure: no Dagster import.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# SQLAlchemy URLs such as postgresql+psycopg2://user:pw@host/db are not always parseable by
# urlsplit when the password holds reserved characters; this finds the scheme and authority by hand.
_AUTHORITY = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)")


def redact_url(url: object) -> str:
    """Return `scheme://host:port` of a URL (port only when given); never a credential.

    Not-a-URL values (a path, a bare host) are returned as given only when they carry no `@`,
    because a path is not a secret but `user:pw@host` might be.
    """
    text = str(url or "").strip()
    match = _AUTHORITY.match(text)
    if match is None:
        if "@" in text:
            return "<redacted>"
        return text
    scheme = match.group("scheme")
    authority = match.group("authority").rsplit("@", 1)[-1]
    if scheme.startswith("sqlite"):
        # A SQLite URL names a local file, no host; the path is what the operator needs to see.
        return text.split("?", 1)[0]
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        host, port = authority, None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def redact_urls_in(text: str, urls: list[str] | tuple[str, ...] = ()) -> str:
    """Replace every URL (the given ones and any `scheme://...` found) in a message by its redaction.

    Library exceptions (requests, urllib3, SQLAlchemy) quote full URLs in their text; this is the
    last line of defence before such a message is logged or raised again.
    """
    out = text
    for url in sorted((u for u in urls if u), key=len, reverse=True):
        out = out.replace(url, redact_url(url))
    return _ANY_URL.sub(lambda m: redact_url(m.group(0)), out)


_ANY_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>)\]]+")


def redact_secrets_of(text: str, url: str) -> str:
    """`text` (typically a library's error message about a request to `url`) without `url`'s secrets.

    Beyond `redact_urls_in`: requests and urllib3 also quote the request target on its own
    ("Max retries exceeded with url: /file.csv?token=..."), and some messages repeat a password
    outside any URL. Both are cut here; a path without a query string stays (it says what failed).
    """
    out = redact_urls_in(text, [url])
    try:
        parts = urlsplit(str(url))
        password = parts.password
    except ValueError:
        return out
    if parts.query:
        out = out.replace(f"{parts.path}?{parts.query}", f"{parts.path}?<redacted>")
        out = out.replace(parts.query, "<redacted>")
    for secret in (password, parts.username if password else None):
        if secret and len(secret) >= 3:
            out = out.replace(secret, "<redacted>")
    return out
