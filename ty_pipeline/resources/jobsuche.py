"""The Dagster resource for the Jobsuche API: settings only; it builds the Dagster-free `JobsucheClient`
(`ty_pipeline.clients.jobsuche`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.clients.jobsuche import DEFAULT_AA_BASE_URL, PUBLIC_API_KEY, USER_AGENT, JobsucheClient
from ty_pipeline.clients.rate_limit import RateLimit, RateLimiter
from ty_pipeline.resources.setting_fields import checked_fields
from ty_pipeline.settings import AA_BASE_URL


class JobsucheResource(dg.ConfigurableResource):
    """Connection settings for the Jobsuche API (`TY_AA_BASE_URL`)."""

    base_url: str = Field(
        default="", description="Jobsuche API base URL; empty: `TY_AA_BASE_URL`, else the public API (resolved at use)"
    )
    api_key: str = Field(default=PUBLIC_API_KEY, description="X-API-Key header (public client id)")
    user_agent: str = Field(default=USER_AGENT, description="explicit User-Agent; the WAF rejects empty ones")
    timeout_s: float = Field(default=30.0, description="read timeout per request")
    max_retries: int = Field(default=4, description="retries for 403/429/5xx/timeouts per request")
    backoff_base_s: float = Field(default=2.0, description="first backoff step; doubles per retry")
    # Pacing shared by every request of a step (search pages, details, retries). 30 req/s is about the
    # old default's measured 27 req/s and lets 16,000 details finish in ~9 min; 6 in flight is under
    # the replaced system's 20 workers (README "Going live" → "Settings" gives the reasoning).
    requests_per_s: float = Field(default=30.0, description="sustained request rate for the whole step (> 0)")
    burst: int = Field(default=6, description="requests that may start back to back after an idle spell")
    max_in_flight: int = Field(default=6, description="requests open at once (also the detail workers)")
    page_size: int = Field(default=100, description="results per search page (API maximum 100)")

    _check_settings = checked_fields(base_url=AA_BASE_URL)

    def endpoint(self) -> str:
        return AA_BASE_URL.resolve(self.base_url) or DEFAULT_AA_BASE_URL

    def rate_limit(self) -> RateLimit:
        return RateLimit(self.requests_per_s, self.burst, self.max_in_flight)

    def get_client(self) -> JobsucheClient:
        """A client with its own limiter: build one per step and share it across the step's threads."""
        return JobsucheClient(
            self.endpoint(),
            api_key=self.api_key,
            user_agent=self.user_agent,
            timeout_s=self.timeout_s,
            policy=RetryPolicy(max_retries=self.max_retries, backoff_base_s=self.backoff_base_s),
            pool_size=max(4, self.max_in_flight),
            limiter=RateLimiter(self.rate_limit()),
        )
