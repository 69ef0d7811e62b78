"""The Dagster resource for the Deutsche Bank careers API: settings only; it builds the Dagster-free
`DeutscheBankClient` (`ty_pipeline.clients.deutsche_bank`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.deutsche_bank import DEFAULT_DB_BASE_URL, USER_AGENT, DeutscheBankClient
from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.domain.deutsche_bank_format import GERMANY_COUNTRY_ID
from ty_pipeline.settings import from_env


class DeutscheBankResource(dg.ConfigurableResource):
    """Connection settings for the Deutsche Bank careers API (`TY_DB_BASE_URL`)."""

    base_url: str = Field(
        default="", description="careers API base URL; empty: `TY_DB_BASE_URL`, else the public API (resolved at use)"
    )
    user_agent: str = Field(default=USER_AGENT, description="browser-like User-Agent")
    timeout_s: float = Field(default=30.0, description="read timeout per request")
    max_retries: int = Field(default=4, description="retries for 403/429/5xx/timeouts per request")
    backoff_base_s: float = Field(default=2.0, description="first backoff step; doubles per retry")
    page_size: int = Field(default=100, description="CountItem per search page (<= 250)")
    page_delay_s: float = Field(default=0.3, description="pause between search pages")
    detail_delay_s: float = Field(default=0.2, description="pause between jobhtml calls per worker")
    detail_workers: int = Field(default=2, description="parallel jobhtml requests")
    country_ids: list[str] = Field(
        default_factory=lambda: [GERMANY_COUNTRY_ID],
        description="PositionLocation.Country filter; 46 = Germany. Empty list fetches worldwide.",
    )
    max_items: int = Field(default=5000, description="safety cap on items paged per run")

    def endpoint(self) -> str:
        return from_env(self.base_url, "TY_DB_BASE_URL", DEFAULT_DB_BASE_URL) or DEFAULT_DB_BASE_URL

    def get_client(self) -> DeutscheBankClient:
        return DeutscheBankClient(
            self.endpoint(),
            user_agent=self.user_agent,
            timeout_s=self.timeout_s,
            policy=RetryPolicy(max_retries=self.max_retries, backoff_base_s=self.backoff_base_s),
            pool_size=max(4, self.detail_workers * 2),
        )
