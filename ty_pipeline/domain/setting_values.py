"""Parsers for single setting values, each error one line naming the variable (`SettingError`), and
`Setting`: one environment variable bound to its parser.

Dagster-free and below every layer, so resources (their pydantic field validators), step retries, the
settings check and the CLI share them: a value is parsed by the same function whether it comes from the
environment or from run config, and so fails with the same line. `ty_pipeline.settings` lists every
setting; `ty_pipeline.settings_check` runs them over the whole environment when the definitions load.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ty_pipeline.domain.urls import redact_url

T = TypeVar("T")

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


def is_unset(value: object) -> bool:
    """None or blank: the setting takes the environment's value, else its default."""
    return value is None or not str(value).strip()


@dataclass(frozen=True)
class Setting(Generic[T]):
    """An environment variable and the one function that parses its values.

    A resource field that can also be given by run config is checked with `parse` too (its field
    validator), so a bad value fails with the same `SettingError` line wherever it was set.
    """

    env: str
    parse: Callable[[str], T]

    def check(self, value: object) -> T:
        """`parse` of a value of any source. Run config gives numbers as numbers, and Dagster hands a whole
        number typed into a float field over as `2.0`: written `2`, as the same value in the environment."""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.parse(str(value))

    def environ_value(self, environ: Mapping[str, str] | None = None) -> T | None:
        """The parsed variable; None when it is unset or blank (the caller's default applies)."""
        raw = (os.environ if environ is None else environ).get(self.env)
        return None if is_unset(raw) else self.parse(str(raw))

    def resolve(self, configured: object, environ: Mapping[str, str] | None = None) -> T | None:
        """A resource field's value when it is set, else the variable's, both through `parse`.

        Resources resolve their environment settings here, when used: Dagster replaces a resource's whole
        configuration with a run's `resources.<name>.config`, so a value wired at load (even an `EnvVar`)
        would be dropped by run config that sets only another field, such as a timeout.
        """
        return self.environ_value(environ) if is_unset(configured) else self.check(configured)


def text(value: str) -> str:
    """A free-form setting (a model name, a path, a token): taken as given, without surrounding spaces."""
    return value.strip()


def parse_directory(name: str, value: str) -> str:
    """An absolute directory path (`~` expanded), returned as given without surrounding spaces.

    Relative paths are refused: the webserver, the daemon and each run's worker process start in working
    directories of their own, so one relative setting would name a different directory in each.
    """
    text = value.strip()
    if not text or "://" in text or not os.path.isabs(os.path.expanduser(text)):
        raise SettingError(name, value, "an absolute directory path, e.g. /var/cache/ty_pipeline or ~/.cache/ty")
    return text


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


def http_url(name: str) -> Setting[str]:
    """An API base URL setting."""
    return Setting(name, lambda value: check_http_url(name, value))


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


def parse_whole(name: str, value: str, unit: str) -> int:
    """A whole number >= 0."""
    return int(parse_non_negative(name, value, 0, unit, whole=True))


def parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """One of `choices`, case and surrounding spaces ignored."""
    choice = value.strip().lower()
    if choice not in choices:
        raise SettingError(name, value, f"one of {', '.join(choices)}")
    return choice


def parse_name_list(name: str, value: str, known: tuple[str, ...]) -> list[str]:
    """A comma list of known names: lower-cased, in the order given, each once; an unknown name or an
    empty list is an error, never silently ignored."""
    names = list(dict.fromkeys(s.strip().lower() for s in value.split(",") if s.strip()))
    if not names or set(names) - set(known):
        raise SettingError(name, value, f"a comma list of {', '.join(known)}")
    return names


def parse_fraction(name: str, value: str) -> float:
    """A share 0..1, or a percentage such as `95%`."""
    text = value.strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise SettingError(name, value, "a share between 0 and 1, e.g. 0.95 or 95%") from None
    if not 0 <= share <= 1:
        raise SettingError(name, value, "a share between 0 and 1, e.g. 0.95 or 95%")
    return share


WAREHOUSE_URL = Setting("TY_WAREHOUSE_URL", check_warehouse_url)

# The step retry policy's settings (`ty_pipeline/step_retries.py`), named here so the settings check can
# validate them without importing Dagster.
DEFAULT_STEP_RETRY_DELAY_S = 15.0
DEFAULT_STEP_MAX_RETRIES = 3
DELAY_ENV = "TY_STEP_RETRY_DELAY_S"
MAX_RETRIES_ENV = "TY_STEP_MAX_RETRIES"
STEP_RETRY_DELAY = Setting(DELAY_ENV, lambda value: parse_non_negative(DELAY_ENV, value, 0, "seconds"))
STEP_MAX_RETRIES = Setting(MAX_RETRIES_ENV, lambda value: parse_whole(MAX_RETRIES_ENV, value, "retries"))
