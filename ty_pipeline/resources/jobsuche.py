"""Jobsuche (Bundesagentur für Arbeit) HTTP client and its Dagster resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from ty_pipeline.domain.jobsuche_format import (
    DetailContent,
    SearchPage,
    encode_refnr,
    parse_details,
    parse_search_page,
)
from ty_pipeline.resources.http_retry import KeyedJsonClient, RetryPolicy, SourceError, request_json
from ty_pipeline.settings import from_env

DEFAULT_AA_BASE_URL = "https://rest.arbeitsagentur.de/jobboerse/jobsuche-service"
PUBLIC_API_KEY = "jobboerse-jobsuche"  # a fixed public client id, not a secret (docs/wire_formats.md §1.2)
USER_AGENT = "ty-pipeline/0.1 (job market research; +https://github.com/ty-pipeline)"
SEARCH_PATHS = ("/pc/v6/jobs", "/pc/v4/jobs")


class SearchWindowExceeded(SourceError):
    """HTTP 400 because page*size went past the 10,000-result window: the end of what can be read."""


@dataclass
class DetailResult:
    status: int
    content: DetailContent | None


class JobsucheClient(KeyedJsonClient):
    default_api_key = PUBLIC_API_KEY
    default_user_agent = USER_AGENT
    _search_path: str | None = None  # the first search path that answered (v6, else v4)

    def search(self, params: dict[str, Any]) -> SearchPage:
        """One search page. Uses v6 and falls back to the v4 route if v6 answers 404."""
        paths = [self._search_path] if self._search_path else list(SEARCH_PATHS)
        last: SourceError | None = None
        for path in paths:
            try:
                _, payload = request_json(
                    self.session, "GET", f"{self.base_url}{path}", params=params,
                    what=f"Jobsuche search {path} {params}", policy=self.policy, timeout=self.timeout,
                    sleep=self.sleep,
                )
            except SourceError as exc:
                if exc.status == 404 and self._search_path is None:
                    last = exc
                    continue
                if exc.status == 400 and _is_window_error(exc.body):
                    raise SearchWindowExceeded(str(exc), status=400, body=exc.body) from exc
                raise
            self._search_path = path
            return parse_search_page(payload)
        assert last is not None
        raise last

    def details(self, refnr: str) -> DetailResult:
        """The posting's detail record; 404 (or a `messages`-only body) means the posting is gone."""
        status, payload = request_json(
            self.session, "GET", f"{self.base_url}/pc/v4/jobdetails/{encode_refnr(refnr)}",
            what=f"Jobsuche details {refnr}", policy=self.policy, timeout=self.timeout, sleep=self.sleep,
            ok_statuses=frozenset({200, 404}),
        )
        if status == 404:
            return DetailResult(status=404, content=DetailContent(None, None, not_found=True))
        return DetailResult(status=status, content=parse_details(payload))


def _is_window_error(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    return any(isinstance(m, dict) and m.get("path") == "page" for m in body.get("messages") or [])


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
