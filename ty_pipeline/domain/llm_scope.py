"""Which sources the LLM assets cover by default (pure; read the same way by the assets, the checks
and the status CLI, so "in scope" agrees everywhere).

One GPU host cannot enrich a whole night: Jobsuche brings 11,000-16,000 postings, Deutsche Bank tens.
So without `TY_LLM_HOSTS` (one server, `OLLAMA_HOST`) the default scope is Deutsche Bank, the source
whose marketing-heavy texts need a summary most (docs/domain_rules.md §3.1). An operator who lists
hosts in `TY_LLM_HOSTS` has sized a fleet for the night, so the default becomes every source; the
per-run cap (measured postings/hour until 06:00, domain/llm_capacity.py) keeps a night that does not
fit from overrunning, newest postings first. `TY_LLM_SOURCES` always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ty_pipeline.domain.setting_values import Setting, parse_fraction, parse_name_list, parse_whole

LLM_SOURCES = ("arbeitsagentur", "deutsche_bank")
SINGLE_HOST_SOURCES = ("deutsche_bank",)
LLM_SOURCES_ENV = "TY_LLM_SOURCES"
LLM_HOSTS_ENV = "TY_LLM_HOSTS"
DEFAULT_MIN_COMPLETE_SHARE = 0.95


def default_llm_sources(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    return LLM_SOURCES if env.get(LLM_HOSTS_ENV, "").strip() else SINGLE_HOST_SOURCES


def parse_llm_sources(value: str | list[str]) -> list[str]:
    """`TY_LLM_SOURCES` (or `llm_scope.sources`): a comma list of the LLM sources."""
    return parse_name_list(LLM_SOURCES_ENV, value if isinstance(value, str) else ",".join(value), LLM_SOURCES)


SOURCES = Setting(LLM_SOURCES_ENV, parse_llm_sources)
MAX_POSTINGS = Setting(
    "TY_LLM_MAX_POSTINGS", lambda value: parse_whole("TY_LLM_MAX_POSTINGS", value, "postings; 0 = no cap")
)
MIN_COMPLETE = Setting("TY_LLM_MIN_COMPLETE", lambda value: parse_fraction("TY_LLM_MIN_COMPLETE", value))


def llm_sources(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """`TY_LLM_SOURCES` when set, else the default above."""
    sources = SOURCES.environ_value(environ)
    return tuple(sources) if sources else default_llm_sources(environ)


def min_complete_share(configured: object = None, environ: Mapping[str, str] | None = None) -> float:
    """The completeness threshold: the configured share, else `TY_LLM_MIN_COMPLETE`, else the default."""
    share = MIN_COMPLETE.resolve(configured, environ)
    return DEFAULT_MIN_COMPLETE_SHARE if share is None else share
