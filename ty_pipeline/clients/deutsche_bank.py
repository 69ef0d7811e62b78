"""Deutsche Bank careers API (Beesite) HTTP client (Dagster-free; the resource is `ty_pipeline.resources.deutsche_bank`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ty_pipeline.clients.http_retry import RetryPolicy, make_session, request_json
from ty_pipeline.clients.rate_limit import RateLimiter
from ty_pipeline.domain.deutsche_bank_format import (
    DbSearchPage,
    JobHtml,
    parse_jobhtml,
    parse_search_response,
    search_request,
)

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
        limiter: RateLimiter | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = make_session(user_agent, pool_size)
        self.timeout = (min(10.0, timeout_s), timeout_s)
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.limiter = limiter  # paces every request of this client (listing, jobhtml, retries)

    def close(self) -> None:
        self.session.close()

    def search(self, first_item: int, count: int, country_ids: list[str] | None) -> DbSearchPage:
        body = search_request(first_item, count, country_ids)
        _, payload = request_json(
            self.session, "POST", f"{self.base_url}/search/", json=body,
            what=f"Deutsche Bank search FirstItem={first_item}", policy=self.policy, timeout=self.timeout,
            sleep=self.sleep, limiter=self.limiter,
        )
        return parse_search_response(payload)

    def jobhtml(self, position_id: str) -> tuple[int, JobHtml | None]:
        """(status, content); 404 means the ad is gone, as does an empty `html`."""
        status, payload = request_json(
            self.session, "GET", f"{self.base_url}/jobhtml/{position_id}.json",
            what=f"Deutsche Bank jobhtml {position_id}", policy=self.policy, timeout=self.timeout,
            sleep=self.sleep, ok_statuses=frozenset({200, 404}), limiter=self.limiter,
        )
        if status == 404:
            return 404, None
        return status, parse_jobhtml(payload)
