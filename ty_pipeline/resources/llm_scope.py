"""Which postings the LLM assets (summaries, skills, IHL) cover, and how many per run.

The night has a fixed GPU budget. Sources: `TY_LLM_SOURCES`, else Deutsche Bank only on one server and
every source once `TY_LLM_HOSTS` lists a fleet (domain/llm_scope.py). Cap: `TY_LLM_MAX_POSTINGS`, else
what the measured postings/hour of recent runs finish before 06:00 (domain/llm_capacity.py; 300 before
the first measured run), newest first. Whatever a run leaves out stays pending (reported as `pending`
in the materialization metadata) and is picked up by the next run of that partition.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.llm_scope import (
    DEFAULT_MIN_COMPLETE_SHARE,
    default_llm_sources,
    parse_llm_sources,
    parse_share,
)


class LlmScopeResource(dg.ConfigurableResource):
    """`TY_LLM_SOURCES` and `TY_LLM_MAX_POSTINGS`, shared by the three LLM assets."""

    sources: str = Field(
        default="",
        description="comma list: arbeitsagentur, deutsche_bank; empty: every source when TY_LLM_HOSTS lists "
        "hosts, else deutsche_bank",
    )
    max_postings: int | None = Field(
        default=None,
        description="cap on postings one LLM run sends to the model (newest first); 0 = no cap; unset: what "
        "the measured postings/hour of recent runs finish before 06:00 Berlin (300 before any measured run)",
    )
    min_complete_share: float = Field(
        default=DEFAULT_MIN_COMPLETE_SHARE,
        description="share of in-scope postings (with a description) that must have a saved result for an "
        "LLM asset's completeness check to pass (TY_LLM_MIN_COMPLETE)",
    )

    def source_list(self) -> list[str]:
        return parse_llm_sources(self.sources) if self.sources.strip() else list(default_llm_sources())

    def cap(self, override: int | None = None, *, measured: int | None = None) -> int | None:
        """The run's cap: a run-config override wins, then the configured cap, then the `measured` one
        (from throughput); None means unlimited."""
        value = self.max_postings if override is None else override
        if value is None:
            return measured
        return value if value > 0 else None

    @property
    def cap_is_measured(self) -> bool:
        return self.max_postings is None


def build_llm_scope_resource() -> LlmScopeResource:
    """For `definitions.build_resources`: env vars as `EnvVar` when set, else the defaults."""
    sources = dg.EnvVar("TY_LLM_SOURCES") if os.environ.get("TY_LLM_SOURCES") else ""
    max_postings = dg.EnvVar.int("TY_LLM_MAX_POSTINGS") if os.environ.get("TY_LLM_MAX_POSTINGS") else None
    return LlmScopeResource(
        sources=sources, max_postings=max_postings, min_complete_share=parse_share(os.environ.get("TY_LLM_MIN_COMPLETE"))
    )
