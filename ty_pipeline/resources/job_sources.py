"""Which posting sources the `postings` asset fetches (`TY_SOURCES`), and the sample source's files."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.source_names import DEFAULT_SOURCES, SOURCES, parse_sources
from ty_pipeline.fetching.sample import DEFAULT_SAMPLE_DIR
from ty_pipeline.resources.setting_fields import checked_by

__all__ = ["JobSourcesResource", "parse_sources"]  # parse_sources: the postings asset's run config uses it


class JobSourcesResource(dg.ConfigurableResource):
    enabled: str = Field(
        default="",
        description="comma list: arbeitsagentur, deutsche_bank, sample; empty: `TY_SOURCES`, else "
        "arbeitsagentur,deutsche_bank (resolved at use, so run config that sets only sample_dir keeps it)",
    )
    sample_dir: str = Field(default=str(DEFAULT_SAMPLE_DIR), description="directory of the sample source files")

    _check_enabled = checked_by(SOURCES, "enabled")

    def sources(self) -> list[str]:
        return SOURCES.resolve(self.enabled) or parse_sources(DEFAULT_SOURCES)
