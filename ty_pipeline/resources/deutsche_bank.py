"""Deutsche Bank careers API (Beesite) HTTP client and its Dagster resource."""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.deutsche_bank_format import (
    GERMANY_COUNTRY_ID,
    DbSearchPage,
    JobHtml,
    parse_jobhtml,
    parse_search_response,
    search_request,
)
from ty_pipeline.resources.http_retry import RetryPolicy, make_session, request_json
from ty_pipeline.settings import from_env

DEFAULT_DB_BASE_URL = "https://api-deutschebank.beesite.de"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) ty-pipeline/0.1"


class DeutscheBankClient:
    def __init__(
        self,
        base_url: str,
        *,
        user_agent: str = USER_AGENT,
        timeout_s: float = 30.0,
        policy: RetryPolicy | None = None,
        pool_size: int = 8,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = make_session(user_agent, pool_size)
        self.timeout = (min(10.0, timeout_s), timeout_s)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep

    def close(self) -> None:
        self.session.close()

    def search(self, first_item: int, count: int, country_ids: list[str] | None) -> DbSearchPage:
        body = search_request(first_item, count, country_ids)
        _, payload = request_json(
            self.session, "POST", f"{self.base_url}/search/", json=body,
            what=f"Deutsche Bank search FirstItem={first_item}", policy=self.policy, timeout=self.timeout,
            sleep=self.sleep,
        )
        return parse_search_response(payload)

    def jobhtml(self, position_id: str) -> tuple[int, JobHtml | None]:
        """(status, content); 404 means the ad is gone, as does an empty `html`."""
        status, payload = request_json(
            self.session, "GET", f"{self.base_url}/jobhtml/{position_id}.json",
            what=f"Deutsche Bank jobhtml {position_id}", policy=self.policy, timeout=self.timeout,
            sleep=self.sleep, ok_statuses=frozenset({200, 404}),
        )
        if status == 404:
            return 404, None
        return status, parse_jobhtml(payload)


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
