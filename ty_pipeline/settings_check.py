"""Environment settings checked up front, each error one line naming the variable.

A garbage `TY_WAREHOUSE_URL` used to surface as a 300-line SQLAlchemy traceback in the middle of a run,
and an unknown `TY_SOURCES` as a ValueError that did not say which variable to fix. Here every setting
the code location reads from the environment is checked when the definitions load (and by the CLI), and
each problem is reported as `NAME='value': expected ...`, with URLs redacted to scheme://host:port.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ty_pipeline.domain.setting_values import (  # the parsers live below every layer that reads a setting
    SettingError,
    check_http_url,
    check_warehouse_url,
    parse_non_negative,
)


def _choices(name: str, value: str, known: tuple[str, ...]) -> None:
    names = [s.strip().lower() for s in value.split(",") if s.strip()]
    if not names or set(names) - set(known):
        raise SettingError(name, value, f"a comma list of {', '.join(known)}")


def environment_checks() -> dict[str, Callable[[str], object]]:
    """Variable -> check of a set (non-empty) value. Imported late: the resources pull in their clients."""
    from ty_pipeline.clients.embedder import BACKENDS
    from ty_pipeline.clients.llm_factory import BACKENDS as LLM_BACKENDS
    from ty_pipeline.clients.llm_factory import normalize_backend
    from ty_pipeline.clients.ollama import DEFAULT_OLLAMA_HOST
    from ty_pipeline.domain.llm_hosts import parse_llm_hosts
    from ty_pipeline.domain.llm_scope import LLM_SOURCES, parse_share
    from ty_pipeline.domain.setting_values import DELAY_ENV, MAX_RETRIES_ENV
    from ty_pipeline.domain.source_names import KNOWN_SOURCES

    def share(value: str) -> object:
        try:
            return parse_share(value)
        except ValueError:
            raise SettingError("TY_LLM_MIN_COMPLETE", value, "a share between 0 and 1, e.g. 0.95 or 95%") from None

    def backend(value: str) -> object:
        if value.strip() not in BACKENDS:
            raise SettingError("TY_EMBED_BACKEND", value, f"one of {', '.join(BACKENDS)}")
        return value

    def llm_backend(value: str) -> object:
        try:
            return normalize_backend(value)
        except ValueError:
            raise SettingError("TY_LLM_BACKEND", value, f"one of {', '.join(LLM_BACKENDS)}") from None

    return {
        "TY_WAREHOUSE_URL": check_warehouse_url,
        "TY_SOURCES": lambda v: _choices("TY_SOURCES", v, KNOWN_SOURCES),
        "TY_LLM_SOURCES": lambda v: _choices("TY_LLM_SOURCES", v, LLM_SOURCES),
        "TY_LLM_MAX_POSTINGS": lambda v: parse_non_negative("TY_LLM_MAX_POSTINGS", v, 0, "postings; 0 = no cap",
                                                            whole=True),
        "TY_LLM_MIN_COMPLETE": share,
        "TY_LLM_HOSTS": lambda v: parse_llm_hosts(v, DEFAULT_OLLAMA_HOST),
        "TY_EMBED_BACKEND": backend,
        "TY_LLM_BACKEND": llm_backend,
        "TY_AA_BASE_URL": lambda v: check_http_url("TY_AA_BASE_URL", v),
        "TY_DB_BASE_URL": lambda v: check_http_url("TY_DB_BASE_URL", v),
        "TY_BERUFENET_API_URL": lambda v: check_http_url("TY_BERUFENET_API_URL", v),
        DELAY_ENV: lambda v: parse_non_negative(DELAY_ENV, v, 0, "seconds"),
        MAX_RETRIES_ENV: lambda v: parse_non_negative(MAX_RETRIES_ENV, v, 0, "retries", whole=True),
    }


def check_environment(environ: Mapping[str, str] | None = None) -> list[SettingError]:
    """Every problem with the set variables (unset ones take their defaults and are fine)."""
    env = os.environ if environ is None else environ
    problems: list[SettingError] = []
    for name, check in environment_checks().items():
        value = env.get(name)
        if value is None or not value.strip():
            continue
        try:
            check(value)
        except SettingError as exc:
            problems.append(exc)
    return problems


class SettingsInvalid(ValueError):
    """All bad settings in one line each; raised when the definitions load."""

    def __init__(self, problems: list[SettingError]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
