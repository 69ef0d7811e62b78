"""The sources the `postings` asset can fetch (`TY_SOURCES`), as plain names: read by the resource and by
the settings check, which must not import Dagster (`ty-pipeline status` checks the environment too)."""

KNOWN_SOURCES = ("arbeitsagentur", "deutsche_bank", "sample")
DEFAULT_SOURCES = "arbeitsagentur,deutsche_bank"
