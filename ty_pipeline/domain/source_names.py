"""The sources the `postings` asset can fetch (`TY_SOURCES`), as plain names: read by the resource and by
the settings check, which must not import Dagster (`ty-pipeline status` checks the environment too)."""

from ty_pipeline.domain.setting_values import Setting, parse_name_list

KNOWN_SOURCES = ("arbeitsagentur", "deutsche_bank", "sample")
DEFAULT_SOURCES = "arbeitsagentur,deutsche_bank"
SOURCES_ENV = "TY_SOURCES"


def parse_sources(value: str | list[str]) -> list[str]:
    """`arbeitsagentur,deutsche_bank` -> list; unknown names are an error, not silently ignored."""
    return parse_name_list(SOURCES_ENV, value if isinstance(value, str) else ",".join(value), KNOWN_SOURCES)


SOURCES = Setting(SOURCES_ENV, parse_sources)
