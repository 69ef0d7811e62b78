"""Alembic revisions of the warehouse schema (frozen: none imports `ty_pipeline.warehouse.schema`)."""

from __future__ import annotations

import importlib


def _0001_view_sql() -> str:
    """The `postings_enriched` view as revision 0001 defines it, for revisions that must drop and recreate
    the view around a table rebuild without changing it. (Module names starting with a digit are imported
    through importlib.)"""
    return str(importlib.import_module(f"{__name__}.0001_baseline").POSTINGS_ENRICHED_SQL)
