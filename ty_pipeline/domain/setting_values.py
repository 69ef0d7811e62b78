"""Parsers for single setting values, each error one line naming the variable (`SettingError`).

Dagster-free and below every layer, so resources, step retries and the CLI share them;
`ty_pipeline.settings_check` runs them over the whole environment when the definitions load.
"""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ty_pipeline.domain.urls import redact_url

WAREHOUSE_BACKENDS = ("sqlite", "postgresql")


class SettingError(ValueError):
    """A setting with a value the pipeline cannot use; the message is one line."""

    def __init__(self, name: str, value: object, expected: str) -> None:
        self.name = name
        self.shown = shown_value(value)
        self.expected = expected
        super().__init__(f"{name}={self.shown!r} is not valid: expected {expected}")


def shown_value(value: object) -> str:
    """A value as it may be shown: URLs and anything with `user:pw@` reduced by `redact_url`."""
    text = str(value if value is not None else "").strip()
    if "://" in text or "@" in text:
        return redact_url(text)
    return text[:80]


def check_warehouse_url(url: str, name: str = "TY_WAREHOUSE_URL") -> str:
    """The URL if SQLAlchemy can parse it and names a backend we support; else `SettingError`."""
    expected = "an SQLAlchemy URL such as sqlite:////path/warehouse.sqlite or postgresql://user@host:5432/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise SettingError(name, url, expected) from None
    if parsed.get_backend_name() not in WAREHOUSE_BACKENDS:
        raise SettingError(name, url, expected)
    return url


def check_http_url(name: str, value: str) -> str:
    text = value.strip()
    if not text.startswith(("http://", "https://")) or len(text.split("://", 1)[1].strip("/")) == 0:
        raise SettingError(name, value, "an http:// or https:// URL")
    return text


def parse_non_negative(name: str, value: str | None, default: float, unit: str, whole: bool = False) -> float:
    """A number >= 0 from the environment; unset or blank gives `default`."""
    if value is None or not value.strip():
        return default
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        raise SettingError(name, value, f"a number >= 0 ({unit})") from None
    if number < 0 or number != number:  # negative or NaN
        raise SettingError(name, value, f"a number >= 0 ({unit})")
    return number


# The step retry policy's settings (`ty_pipeline/step_retries.py`), named here so the settings check can
# validate them without importing Dagster.
DEFAULT_STEP_RETRY_DELAY_S = 15.0
DEFAULT_STEP_MAX_RETRIES = 3
DELAY_ENV = "TY_STEP_RETRY_DELAY_S"
MAX_RETRIES_ENV = "TY_STEP_MAX_RETRIES"
