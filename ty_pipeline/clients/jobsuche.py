"""Jobsuche (Bundesagentur für Arbeit) HTTP client (Dagster-free; the resource is `ty_pipeline.resources.jobsuche`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ty_pipeline.clients.http_retry import JsonApiClient, SourceError
from ty_pipeline.domain.jobsuche_format import (
    DetailContent,
    SearchPage,
    encode_refnr,
    parse_details,
    parse_search_page,
)

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


class JobsucheClient(JsonApiClient):
    default_api_key = PUBLIC_API_KEY
    default_user_agent = USER_AGENT
    _search_path: str | None = None  # the first search path that answered (v6, else v4)

    def search(self, params: dict[str, Any]) -> SearchPage:
        """One search page. Uses v6 and falls back to the v4 route if v6 answers 404."""
        paths = [self._search_path] if self._search_path else list(SEARCH_PATHS)
        last: SourceError | None = None
        for path in paths:
            try:
                _, payload = self.fetch_json("GET", path, params=params, what=f"Jobsuche search {path} {params}")
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
        status, payload = self.fetch_json(
            "GET", f"/pc/v4/jobdetails/{encode_refnr(refnr)}", what=f"Jobsuche details {refnr}",
            ok_statuses=frozenset({200, 404}),
        )
        if status == 404:
            return DetailResult(status=404, content=DetailContent(None, None, not_found=True))
        return DetailResult(status=status, content=parse_details(payload))


def _is_window_error(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    return any(isinstance(m, dict) and m.get("path") == "page" for m in body.get("messages") or [])
