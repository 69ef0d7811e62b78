"""Deutsche Bank careers API (Beesite) HTTP client (Dagster-free; the resource is `ty_pipeline.resources.deutsche_bank`)."""

from __future__ import annotations

from ty_pipeline.clients.http_retry import JsonApiClient
from ty_pipeline.domain.deutsche_bank_format import (
    DbSearchPage,
    JobHtml,
    parse_jobhtml,
    parse_search_response,
    search_request,
)

DEFAULT_DB_BASE_URL = "https://api-deutschebank.beesite.de"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) ty-pipeline/0.1"


class DeutscheBankClient(JsonApiClient):
    default_user_agent = USER_AGENT

    def search(self, first_item: int, count: int, country_ids: list[str] | None) -> DbSearchPage:
        body = search_request(first_item, count, country_ids)
        _, payload = self.fetch_json("POST", "/search/", json=body, what=f"Deutsche Bank search FirstItem={first_item}")
        return parse_search_response(payload)

    def jobhtml(self, position_id: str) -> tuple[int, JobHtml | None]:
        """(status, content); 404 means the ad is gone, as does an empty `html`."""
        status, payload = self.fetch_json(
            "GET", f"/jobhtml/{position_id}.json", what=f"Deutsche Bank jobhtml {position_id}",
            ok_statuses=frozenset({200, 404}),
        )
        if status == 404:
            return 404, None
        return status, parse_jobhtml(payload)
