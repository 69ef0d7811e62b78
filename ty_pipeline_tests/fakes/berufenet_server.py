"""A loopback fake of the BERUFENET REST API (docs/wire_formats.md §3.3) in its documented wire format.

Why: the production fetcher pages a HAL list and then fetches one detail per profession with retries on
a thread pool; paging ends, unwrapping, KldB parsing and the failure policy must be exercised over HTTP:

* `GET /infosysbub/bnet/pc/v1/berufe?suchwoerter=*&page=N`: page 0-based, 20 per page, HAL JSON with
  `_embedded.berufSucheList[] {id, kurzBezeichnungNeutral, bkgr{id, typ{id}}}`, `_links.self`,
  `_links.next` (absent on the last page) and `page {size, totalElements, totalPages, number}`. An empty
  page (past the end) leaves `_embedded` out, as Spring's HAL does.
* `GET /infosysbub/bnet/pc/v1/berufe/{id}`: a JSON array with one object (`id`, `kurzBezeichnungNeutral`,
  `kldb2010` like "B 28212", `bkgr`, `steckbrief`, `infofelder`, `bilder`).
* `X-API-Key: infosysbub-berufenet` is required: without it (or with another value) the answer is 401.

Per-profession knobs give a detail without `kldb2010` (`kldb2010=None`), a malformed one ("B 2821") or a
bare object instead of the array (`bare_detail`). Faults (429 with Retry-After, 500, dropped connections)
use the same queue as the Jobsuche fake: for the list they match on the query (`match={"page": 1}`), for
details on the id (`match={"id": 12345}`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ty_pipeline_tests.fakes.http_base import LoopbackServer, Request, Response
from ty_pipeline_tests.fakes.jobsuche_server import (
    Fault,
    FaultQueue,
    fault_response,
    spring_error,
    stable_int,
)

BERUFE_PATH = "/infosysbub/bnet/pc/v1/berufe"
API_KEY = "infosysbub-berufenet"
PAGE_SIZE = 20

# Valid five-digit codes the generated professions cycle through (every level, a military one).
SAMPLE_KLDB = ("28212", "43414", "29302", "72213", "81313", "51622", "26111", "01104", "62102", "84304")


@dataclass
class FakeBeruf:
    """One BERUFENET profession. `kldb2010=None` leaves the key out of the detail record."""

    id: int
    name: str
    kldb2010: str | None
    bare_detail: bool = False  # answer the detail as a bare object instead of a one-element array

    @property
    def bkgr(self) -> dict[str, Any]:
        # Berufskundliche Gruppe; the values are invented but stable per profession.
        return {"id": 1000 + stable_int(self.name, 900), "typ": {"id": 1 + stable_int(str(self.id), 4)}}

    def list_item(self) -> dict[str, Any]:
        return {"id": self.id, "kurzBezeichnungNeutral": self.name, "bkgr": self.bkgr}

    def detail(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": self.id, "kurzBezeichnungNeutral": self.name}
        if self.kldb2010 is not None:
            record["kldb2010"] = self.kldb2010
        record.update({
            "bkgr": self.bkgr,
            "steckbrief": {
                "kurz": f"{self.name} üben eine Tätigkeit aus, die es nur in Tests gibt.",
                "lang": f"<p>{self.name} arbeiten in Werkstätten und Büros.</p>",
            },
            "infofelder": [
                {"id": "b11-0", "ueberschrift": "Aufgaben kompakt", "content": f"<p>Was {self.name} tun.</p>"},
                {"id": "a30-0", "ueberschrift": "Zugang", "content": "<p>Ausbildung oder Studium.</p>"},
            ],
            "bilder": [],
        })
        return record


def letters(i: int) -> str:
    """0 -> "a", 25 -> "z", 26 -> "ba": distinct words for generated names (digits would be cleaned away)."""
    out = ""
    while True:
        i, rest = divmod(i, 26)
        out = chr(ord("a") + rest) + out
        if i == 0:
            return out


def numbered_professions(n: int, *, first_id: int = 100000) -> list[FakeBeruf]:
    """`n` professions with distinct names ("Prüfberuf Ab/in") and valid codes ("B 28212")."""
    return [
        FakeBeruf(first_id + i, f"Prüfberuf {letters(i + 26).capitalize()}/in",
                  f"B {SAMPLE_KLDB[i % len(SAMPLE_KLDB)]}")
        for i in range(n)
    ]


def unauthorized(path: str) -> Response:
    """The gateway's answer to a missing or unknown client id."""
    return Response.json_body({"timestamp": "2026-11-20T22:00:00.000Z", "status": 401, "error": "Unauthorized",
                               "path": path}, status=401)


class FakeBerufenet(LoopbackServer):
    """Fake `rest.arbeitsagentur.de` for BERUFENET; point the fetcher at `base_url`.

    Knobs: `next_on_last_page` (a buggy server that links "next" from the last page as well; the client
    must stop by `totalPages`), `reported_total` (overrides `page.totalElements`/`totalPages`, e.g. more
    than there are, so the client must stop on the empty page).
    """

    def __init__(self, professions: Iterable[FakeBeruf] = (), *, api_key: str = API_KEY) -> None:
        super().__init__()
        self.professions: list[FakeBeruf] = list(professions)
        self.api_key = api_key
        self.faults = FaultQueue()
        self.next_on_last_page = False
        self.reported_total: int | None = None

    def fail_next(
        self,
        path_prefix: str,
        *,
        status: int | None = None,
        times: int = 1,
        body: str | None = None,
        drop: bool = False,
        retry_after: str | None = None,
        match: dict[str, Any] | None = None,
    ) -> None:
        """Queue a fault for the next `times` matching requests (see the module docstring for `match`)."""
        self.faults.add(Fault(path_prefix, status, times, body, False, drop, retry_after, match))

    def by_id(self, berufs_id: int) -> FakeBeruf:
        return next(p for p in self.professions if p.id == berufs_id)

    # -- request log helpers -------------------------------------------------------------------

    def list_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == BERUFE_PATH]

    def detail_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(BERUFE_PATH + "/")]

    # -- serving -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.method != "GET":
            return spring_error(405, request.path)
        if request.headers.get("x-api-key") != self.api_key:
            return unauthorized(request.path)
        if request.path == BERUFE_PATH:
            fields = dict(request.query)
            fault = self.faults.take(request, fields)
            if fault is not None:
                return fault_response(fault, lambda: self._list(request), lambda s: spring_error(s, request.path))
            return self._list(request)
        if request.path.startswith(BERUFE_PATH + "/"):
            raw_id = request.path[len(BERUFE_PATH) + 1:]
            fault = self.faults.take(request, {"id": raw_id})
            if fault is not None:
                return fault_response(fault, lambda: self._detail(request, raw_id),
                                      lambda s: spring_error(s, request.path))
            return self._detail(request, raw_id)
        return spring_error(404, request.path)

    def _list(self, request: Request) -> Response:
        try:
            page = int(request.query.get("page", "0"))
        except ValueError:
            return spring_error(400, request.path)
        total = len(self.professions) if self.reported_total is None else self.reported_total
        total_pages = math.ceil(total / PAGE_SIZE)
        items = [p.list_item() for p in self.professions[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]]
        search = request.query.get("suchwoerter", "*")
        links: dict[str, Any] = {"self": {"href": self._href(search, page)}}
        if page + 1 < total_pages or self.next_on_last_page:
            links["next"] = {"href": self._href(search, page + 1)}
        body: dict[str, Any] = {}
        if items:
            body["_embedded"] = {"berufSucheList": items}
        body["_links"] = links
        body["page"] = {"size": PAGE_SIZE, "totalElements": total, "totalPages": total_pages, "number": page}
        return Response.json_body(body, content_type="application/hal+json")

    def _href(self, search: str, page: int) -> str:
        return f"{self.base_url}{BERUFE_PATH}?suchwoerter={search}&page={page}"

    def _detail(self, request: Request, raw_id: str) -> Response:
        profession = next((p for p in self.professions if str(p.id) == raw_id), None)
        if profession is None:
            return spring_error(404, request.path)
        record = profession.detail()
        return Response.json_body(record if profession.bare_detail else [record])
