"""Which postings the LLM assets (summaries, skills, IHL) cover, and how many per run.

The night has a fixed GPU budget: with the defaults, Deutsche Bank postings only (the source whose
marketing-heavy texts need a summary, docs/domain_rules.md §3.1, and the only one IHL was ever run on, §5) and
at most 300 postings per asset run, newest first. Whatever a run leaves out stays pending (reported as
`pending` in the materialization metadata) and is picked up by the next run of that partition.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

DEFAULT_LLM_SOURCES = "deutsche_bank"
DEFAULT_LLM_MAX_POSTINGS = 300
DEFAULT_MIN_COMPLETE_SHARE = 0.95
LLM_SOURCES = ("arbeitsagentur", "deutsche_bank")


def parse_llm_sources(value: str | list[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    names = list(dict.fromkeys(s.strip().lower() for s in items if s and s.strip()))
    unknown = sorted(set(names) - set(LLM_SOURCES))
    if unknown:
        raise ValueError(f"unknown LLM source(s) {unknown} (TY_LLM_SOURCES); choose from {', '.join(LLM_SOURCES)}")
    if not names:
        raise ValueError(f"no LLM source configured (TY_LLM_SOURCES); choose from {', '.join(LLM_SOURCES)}")
    return names


class LlmScopeResource(dg.ConfigurableResource):
    """`TY_LLM_SOURCES` and `TY_LLM_MAX_POSTINGS`, shared by the three LLM assets."""

    sources: str = Field(default=DEFAULT_LLM_SOURCES, description="comma list: arbeitsagentur, deutsche_bank")
    max_postings: int = Field(
        default=DEFAULT_LLM_MAX_POSTINGS,
        description="cap on postings one LLM asset run sends to the model (newest first); 0 = no cap",
    )
    min_complete_share: float = Field(
        default=DEFAULT_MIN_COMPLETE_SHARE,
        description="share of in-scope postings (with a description) that must have a saved result for an "
        "LLM asset's completeness check to pass (TY_LLM_MIN_COMPLETE)",
    )

    def source_list(self) -> list[str]:
        return parse_llm_sources(self.sources)

    def cap(self, override: int | None = None) -> int | None:
        """The run's cap: a run-config override wins; None means unlimited."""
        value = self.max_postings if override is None else override
        return value if value and value > 0 else None


def build_llm_scope_resource() -> LlmScopeResource:
    """For `definitions.build_resources`: env vars as `EnvVar` when set, else the defaults."""
    sources = dg.EnvVar("TY_LLM_SOURCES") if os.environ.get("TY_LLM_SOURCES") else DEFAULT_LLM_SOURCES
    max_postings = (
        dg.EnvVar.int("TY_LLM_MAX_POSTINGS") if os.environ.get("TY_LLM_MAX_POSTINGS") else DEFAULT_LLM_MAX_POSTINGS
    )
    return LlmScopeResource(
        sources=sources, max_postings=max_postings, min_complete_share=parse_share(os.environ.get("TY_LLM_MIN_COMPLETE"))
    )


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
