"""Which posting sources the `postings` asset fetches (`TY_SOURCES`), the sample source's files, and the
three source resources as the `SourceAccess` the fetching services take."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.source_names import DEFAULT_SOURCES, SOURCES, parse_sources
from ty_pipeline.fetching.sample import DEFAULT_SAMPLE_DIR
from ty_pipeline.fetching.source_access import SourceAccess
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.jobsuche import JobsucheResource
from ty_pipeline.resources.setting_fields import checked_fields

__all__ = ["JobSourcesResource", "parse_sources"]  # parse_sources: the postings asset's run config uses it


class JobSourcesResource(dg.ConfigurableResource):
    enabled: str = Field(
        default="",
        description="comma list: arbeitsagentur, deutsche_bank, sample; empty: `TY_SOURCES`, else "
        "arbeitsagentur,deutsche_bank (resolved at use, so run config that sets only sample_dir keeps it)",
    )
    sample_dir: str = Field(default=str(DEFAULT_SAMPLE_DIR), description="directory of the sample source files")

    _check_settings = checked_fields(enabled=SOURCES)

    def sources(self) -> list[str]:
        return SOURCES.resolve(self.enabled) or parse_sources(DEFAULT_SOURCES)


def source_access(
    jobsuche: JobsucheResource, deutsche_bank: DeutscheBankResource, job_sources: JobSourcesResource
) -> SourceAccess:
    """What the Dagster-free fetching services need from the three source resources."""
    return SourceAccess(
        jobsuche=jobsuche.get_client,
        deutsche_bank=deutsche_bank.get_client,
        sample_dir=Path(job_sources.sample_dir),
        jobsuche_page_size=jobsuche.page_size,
        deutsche_bank_page_size=deutsche_bank.page_size,
        deutsche_bank_country_ids=deutsche_bank.country_ids,
        deutsche_bank_max_items=deutsche_bank.max_items,
        jobsuche_in_flight=jobsuche.max_in_flight,
        deutsche_bank_in_flight=deutsche_bank.max_in_flight,
    )
