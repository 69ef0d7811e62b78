"""The Dagster resource for the Deutsche Bank careers API: settings only; it builds the Dagster-free
`DeutscheBankClient` (`ty_pipeline.clients.deutsche_bank`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.deutsche_bank import DEFAULT_DB_BASE_URL, USER_AGENT, DeutscheBankClient
from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.clients.rate_limit import RateLimit, RateLimiter
from ty_pipeline.domain.deutsche_bank_format import GERMANY_COUNTRY_ID
from ty_pipeline.resources.setting_fields import checked_fields
from ty_pipeline.settings import DB_BASE_URL


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
    # A single employer's site with a few hundred postings: 4 req/s (one request every 0.25 s, inside
    # the 0.15-2 s between pages other public clients use) fetches them in a minute or two.
    requests_per_s: float = Field(default=4.0, description="sustained request rate for the whole step (> 0)")
    burst: int = Field(default=2, description="requests that may start back to back after an idle spell")
    max_in_flight: int = Field(default=2, description="requests open at once (also the jobhtml workers)")
    country_ids: list[str] = Field(
        default_factory=lambda: [GERMANY_COUNTRY_ID],
        description="PositionLocation.Country filter; 46 = Germany. Empty list fetches worldwide.",
    )
    max_items: int = Field(default=5000, description="safety cap on items paged per run")

    _check_settings = checked_fields(base_url=DB_BASE_URL)

    def endpoint(self) -> str:
        return DB_BASE_URL.resolve(self.base_url) or DEFAULT_DB_BASE_URL

    def rate_limit(self) -> RateLimit:
        return RateLimit(self.requests_per_s, self.burst, self.max_in_flight)

    def get_client(self) -> DeutscheBankClient:
        """A client with its own limiter: build one per step and share it across the step's threads."""
        return DeutscheBankClient(
            self.endpoint(),
            user_agent=self.user_agent,
            timeout_s=self.timeout_s,
            policy=RetryPolicy(max_retries=self.max_retries, backoff_base_s=self.backoff_base_s),
            pool_size=max(4, self.max_in_flight),
            limiter=RateLimiter(self.rate_limit()),
        )
