"""Which postings the LLM assets (summaries, skills, IHL) cover, and how many per run.

The night has a fixed GPU budget. Sources: `TY_LLM_SOURCES`, else Deutsche Bank only on one server and
every source once `TY_LLM_HOSTS` lists a fleet (domain/llm_scope.py). Cap: `TY_LLM_MAX_POSTINGS`, else
what the measured postings/hour of recent runs finish before 06:00 (domain/llm_capacity.py; 300 before
the first measured run), newest first. Whatever a run leaves out stays pending (reported as `pending`
in the materialization metadata) and is picked up by the next run of that partition.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.llm_scope import (
    MAX_POSTINGS,
    MIN_COMPLETE,
    SOURCES,
    default_llm_sources,
    min_complete_share,
)
from ty_pipeline.resources.setting_fields import checked_fields


class LlmScopeResource(dg.ConfigurableResource):
    """`TY_LLM_SOURCES`, `TY_LLM_MAX_POSTINGS` and `TY_LLM_MIN_COMPLETE`, shared by the three LLM assets.

    Every field left empty is resolved from its variable when used, so run config that sets one of
    them (say `max_postings` for one night) keeps the environment's value of the others.
    """

    sources: str = Field(
        default="",
        description="comma list: arbeitsagentur, deutsche_bank; empty: `TY_LLM_SOURCES`, else every source when "
        "TY_LLM_HOSTS lists hosts, else deutsche_bank",
    )
    max_postings: int | None = Field(
        default=None,
        description="cap on postings one LLM run sends to the model (newest first); 0 = no cap; unset: "
        "`TY_LLM_MAX_POSTINGS`, else what the measured postings/hour of recent runs finish before 06:00 Berlin "
        "(300 before any measured run)",
    )
    min_complete_share: float | None = Field(
        default=None,
        description="share of in-scope postings (with a description) that must have a saved result for an "
        "LLM asset's completeness check to pass; unset: `TY_LLM_MIN_COMPLETE`, else 0.95",
    )

    _check_settings = checked_fields(sources=SOURCES, max_postings=MAX_POSTINGS, min_complete_share=MIN_COMPLETE)

    def source_list(self) -> list[str]:
        return SOURCES.resolve(self.sources) or list(default_llm_sources())

    def configured_cap(self) -> int | None:
        """`max_postings`, else `TY_LLM_MAX_POSTINGS`; None when neither is set (the cap is measured)."""
        return MAX_POSTINGS.resolve(self.max_postings)

    def cap(self, override: int | None = None, *, measured: int | None = None) -> int | None:
        """The run's cap: a run-config override wins, then the configured cap, then the `measured` one
        (from throughput); None means unlimited."""
        value = self.configured_cap() if override is None else override
        if value is None:
            return measured
        return value if value > 0 else None

    @property
    def cap_is_measured(self) -> bool:
        return self.configured_cap() is None

    def completeness_threshold(self) -> float:
        return min_complete_share(self.min_complete_share)

