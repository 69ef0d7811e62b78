"""URLs shown to operators never carry credentials, paths or query strings."""

from __future__ import annotations

import pytest

from ty_pipeline.domain.urls import redact_url, redact_urls_in


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@gpu1:11434/api/chat", "http://gpu1:11434"),
        ("https://api.example.de/path?api_key=abc#frag", "https://api.example.de"),
        ("postgresql+psycopg2://ty:p@ss@db.internal:5432/warehouse", "postgresql+psycopg2://db.internal:5432"),
        ("http://[::1]:8000/v1", "http://[::1]:8000"),
        ("sqlite:////var/lib/ty/warehouse.sqlite", "sqlite:////var/lib/ty/warehouse.sqlite"),
        ("localhost:11434", "localhost:11434"),
        ("user:pw@host", "<redacted>"),
        ("", ""),
    ],
)
def test_redact_url_keeps_scheme_host_port_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls_inside_library_messages_are_redacted() -> None:
    message = (
        "HTTPConnectionPool(host='gpu1', port=11434): Max retries exceeded with url: "
        "http://user:secret@gpu1:11434/api/chat?token=t0k (Caused by ...)"
    )
    shown = redact_urls_in(message, ["http://user:secret@gpu1:11434"])
    assert "secret" not in shown and "t0k" not in shown
    assert "http://gpu1:11434" in shown
