"""ty_pipeline: Dagster code location that fetches German job postings and enriches them with local LLMs."""

from ty_pipeline.definitions import defs

__all__ = ["defs"]
