"""Database errors as operators see them: one line, no credentials."""

from __future__ import annotations

from ty_pipeline.domain.urls import redact_urls_in


def describe_db_error(exc: BaseException, url: str) -> str:
    """The first line of a database error, with every URL in it redacted (drivers quote DSNs)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines() or [""]
    return redact_urls_in(f"{type(orig).__name__}: {lines[0]}", [url])
