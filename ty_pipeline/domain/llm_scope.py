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

LLM_SOURCES = ("arbeitsagentur", "deutsche_bank")
SINGLE_HOST_SOURCES = ("deutsche_bank",)
LLM_SOURCES_ENV = "TY_LLM_SOURCES"
LLM_HOSTS_ENV = "TY_LLM_HOSTS"
DEFAULT_MIN_COMPLETE_SHARE = 0.95


def default_llm_sources(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if environ is None else environ
    return LLM_SOURCES if env.get(LLM_HOSTS_ENV, "").strip() else SINGLE_HOST_SOURCES


def parse_llm_sources(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    names = list(dict.fromkeys(s.strip().lower() for s in items if s and s.strip()))
    unknown = sorted(set(names) - set(LLM_SOURCES))
    if unknown:
        raise ValueError(f"unknown LLM source(s) {unknown} (TY_LLM_SOURCES); choose from {', '.join(LLM_SOURCES)}")
    if not names:
        raise ValueError(f"no LLM source configured (TY_LLM_SOURCES); choose from {', '.join(LLM_SOURCES)}")
    return names


def llm_sources(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """`TY_LLM_SOURCES` when set (names as given, lower-cased), else the default above."""
    env = os.environ if environ is None else environ
    raw = env.get(LLM_SOURCES_ENV, "")
    sources = tuple(dict.fromkeys(s.strip().lower() for s in raw.split(",") if s.strip()))
    return sources or default_llm_sources(env)


def parse_share(value: str | None) -> float:
    """`TY_LLM_MIN_COMPLETE`: a share 0..1 (or a percentage like `90%`); unset means the default."""
    if not value or not value.strip():
        return DEFAULT_MIN_COMPLETE_SHARE
    text = value.strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"TY_LLM_MIN_COMPLETE={value!r} is not a share between 0 and 1 (e.g. 0.95 or 95%)") from None
    if not 0 <= share <= 1:
        raise ValueError(f"TY_LLM_MIN_COMPLETE={value!r} is not a share between 0 and 1 (e.g. 0.95 or 95%)")
    return share
