"""Which posting sources the `postings` asset fetches (`TY_SOURCES`), the sample source's files, and the
three source resources as the `SourceAccess` the fetching services take."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.setting_values import SettingError
from ty_pipeline.domain.source_names import DEFAULT_SOURCES, KNOWN_SOURCES
from ty_pipeline.fetching.sample import DEFAULT_SAMPLE_DIR
from ty_pipeline.fetching.source_access import SourceAccess
from ty_pipeline.resources.deutsche_bank import DeutscheBankResource
from ty_pipeline.resources.jobsuche import JobsucheResource


def parse_sources(value: str | list[str]) -> list[str]:
    """`arbeitsagentur,deutsche_bank` -> list; unknown names are an error, not silently ignored."""
    items = value.split(",") if isinstance(value, str) else value
    names = [s.strip().lower() for s in items if s and s.strip()]
    unknown = sorted(set(names) - set(KNOWN_SOURCES))
    if unknown:
        raise ValueError(f"unknown posting source(s) {unknown}; choose from {', '.join(KNOWN_SOURCES)}")
    if not names:
        raise ValueError(f"no posting source configured; choose from {', '.join(KNOWN_SOURCES)}")
    return list(dict.fromkeys(names))


class JobSourcesResource(dg.ConfigurableResource):
    enabled: str = Field(default=DEFAULT_SOURCES, description="comma list: arbeitsagentur, deutsche_bank, sample")
    sample_dir: str = Field(default=str(DEFAULT_SAMPLE_DIR), description="directory of the sample source files")

    def sources(self) -> list[str]:
        try:
            return parse_sources(self.enabled)
        except ValueError:  # the value comes from TY_SOURCES: say so, in one line
            raise SettingError("TY_SOURCES", self.enabled, f"a comma list of {', '.join(KNOWN_SOURCES)}") from None


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
