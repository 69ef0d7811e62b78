"""The Dagster resource for the Jobsuche API: settings only; it builds the Dagster-free `JobsucheClient`
(`ty_pipeline.clients.jobsuche`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from ty_pipeline.clients.http_retry import RetryPolicy
from ty_pipeline.clients.jobsuche import DEFAULT_AA_BASE_URL, PUBLIC_API_KEY, USER_AGENT, JobsucheClient
from ty_pipeline.settings import from_env


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
    page_delay_s: float = Field(default=0.2, description="pause between search pages (politeness)")
    detail_delay_s: float = Field(default=0.1, description="pause between detail calls per worker")
    detail_workers: int = Field(default=4, description="parallel detail requests")
    page_size: int = Field(default=100, description="results per search page (API maximum 100)")

    def endpoint(self) -> str:
        return from_env(self.base_url, "TY_AA_BASE_URL", DEFAULT_AA_BASE_URL) or DEFAULT_AA_BASE_URL

    def get_client(self) -> JobsucheClient:
        return JobsucheClient(
            self.endpoint(),
            api_key=self.api_key,
            user_agent=self.user_agent,
            timeout_s=self.timeout_s,
            policy=RetryPolicy(max_retries=self.max_retries, backoff_base_s=self.backoff_base_s),
            pool_size=max(4, self.detail_workers * 2),
        )
