"""Where the profession catalog comes from, and the limits of the failed-title backfill.

`TY_KLDB_CSV` (a path or URL of the official KldB 2010 directory CSV) gives the full catalog: 18,838
named professions plus the 1,300 five-digit occupations. Unset, the small hand-written seed catalog in
`data/seed_catalog.csv` keeps the product runnable offline (contract.md).
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.professions.catalog import DEFAULT_SEED_CATALOG, LoadedCatalog, load_catalog_file
from ty_pipeline.professions.failed_titles import DEFAULT_MAX_PARTITIONS


class ProfessionCatalogResource(dg.ConfigurableResource):
    kldb_csv: str | None = Field(
        default=None, description="Path or URL of the KldB 2010 directory CSV (TY_KLDB_CSV); unset: the seed catalog"
    )
    seed_csv: str = Field(default=str(DEFAULT_SEED_CATALOG), description="The seed catalog used without kldb_csv")
    max_failed_title_partitions: int = Field(
        default=DEFAULT_MAX_PARTITIONS,
        description="Cap on `berufenet_failed_titles` dynamic partitions (the UI slows down beyond ~35,000)",
    )

    def load(self) -> LoadedCatalog:
        return load_catalog_file(self.kldb_csv or None, self.seed_csv)
