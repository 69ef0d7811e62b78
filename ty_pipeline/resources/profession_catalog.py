"""Where the profession catalog comes from, and the limits of the failed-title backfill.

By default the official KldB 2010 directory shipped in `data/kldb/` (docs/contract.md): 18,838 named
professions plus the 1,300 five-digit occupations, offline. `TY_KLDB_CSV` points at another edition (a
path or URL), or says `seed` for the 146-row hand-written catalog in `data/seed_catalog.csv`, which tests
use because it builds in a blink. `TY_BERUFENET_API_URL` adds the professions of the BERUFENET REST API on
top of either (optional; none of it is reachable offline).
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.berufenet import (
    DEFAULT_BURST,
    DEFAULT_REQUESTS_PER_S,
    DEFAULT_WORKERS,
    PUBLIC_API_KEY,
    fetch_berufenet,
)
from ty_pipeline.domain.failed_titles import DEFAULT_MAX_PARTITIONS
from ty_pipeline.professions.catalog import (
    DEFAULT_SEED_CATALOG,
    SEED,
    LoadedCatalog,
    load_catalog_file,
    with_berufenet,
)
from ty_pipeline.resources.setting_fields import checked_fields
from ty_pipeline.settings import BERUFENET_API_URL, KLDB_CSV


class ProfessionCatalogResource(dg.ConfigurableResource):
    kldb_csv: str | None = Field(
        default=None,
        description=(
            "Path or URL of a KldB 2010 directory CSV; unset: `TY_KLDB_CSV` (resolved at use, so run config that "
            f"sets another field keeps it), else the directory shipped in data/kldb/; '{SEED}': the small seed "
            "catalog at seed_csv"
        ),
    )
    seed_csv: str = Field(default=str(DEFAULT_SEED_CATALOG), description=f"The seed catalog used when kldb_csv='{SEED}'")
    max_failed_title_partitions: int = Field(
        default=DEFAULT_MAX_PARTITIONS,
        description="Cap on `berufenet_failed_titles` dynamic partitions (the UI slows down beyond ~35,000)",
    )

    berufenet_api_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the BERUFENET REST API, e.g. https://rest.arbeitsagentur.de; unset: `TY_BERUFENET_API_URL` "
            "(resolved at use); set, its professions are added to the KldB/seed catalog; neither: the API is not used"
        ),
    )
    berufenet_api_key: str = Field(default=PUBLIC_API_KEY, description="X-API-Key header (public client id)")
    berufenet_workers: int = Field(
        default=DEFAULT_WORKERS, description="parallel BERUFENET detail requests; also the cap on requests open at once"
    )
    # One limiter paces every BERUFENET request of the build (list pages, details, retries); the polite
    # default and why: `clients/berufenet.py`. It replaces `berufenet_delay_s` (a pause per worker).
    berufenet_requests_per_s: float = Field(
        default=DEFAULT_REQUESTS_PER_S, description="sustained BERUFENET request rate for the whole build (> 0)"
    )
    berufenet_burst: int = Field(
        default=DEFAULT_BURST, description="BERUFENET requests that may start back to back after an idle spell"
    )
    berufenet_max_failed_share: float = Field(
        default=0.02,
        description="share of BERUFENET detail calls that may fail (left out, counted) before the build fails",
    )

    _check_settings = checked_fields(berufenet_api_url=BERUFENET_API_URL)

    def kldb_csv_path(self) -> str | None:
        return KLDB_CSV.resolve(self.kldb_csv)

    def berufenet_url(self) -> str | None:
        return BERUFENET_API_URL.resolve(self.berufenet_api_url)

    def load(self, log: Callable[[str], None] | None = None) -> LoadedCatalog:
        """The catalog file, plus the BERUFENET professions when the API is configured."""
        loaded = load_catalog_file(self.kldb_csv_path(), self.seed_csv)
        api_url = self.berufenet_url()
        if not api_url:  # an empty env var means "not configured" as well
            return loaded
        api = fetch_berufenet(
            api_url,
            api_key=self.berufenet_api_key,
            workers=self.berufenet_workers,
            requests_per_s=self.berufenet_requests_per_s,
            burst=self.berufenet_burst,
            max_failed_share=self.berufenet_max_failed_share,
            log=log or (lambda _m: None),
        )
        return with_berufenet(loaded, api)
