"""Named professions from the BERUFENET REST API (docs/wire_formats.md §3.3), an optional source of the catalog.

Why: BERUFENET short names (`kurzBezeichnungNeutral`, "Softwareentwickler/in") are what Jobsuche postings
carry as their profession, so having them in the catalog lets those titles resolve by name. No public file
ships BERUFENET's id + name + KldB (§3.4), and the KldB code is only in each profession's detail record:
one list walk (0-based pages of 20, ≈180 pages) plus one detail call per profession (≈3,570).

Pacing: every request (list pages, details, retries) goes through one `RateLimiter` per fetch, shared by
the detail threads, like Jobsuche and Deutsche Bank (`clients/rate_limit.py`). The former pause after each
call per worker made the rate a product of workers, pause and latency (about 27 requests/s against the
same host as Jobsuche) and never reached the list pages' retries.

Failure policy, because the catalog is replaced as a whole: a list page that still fails after retries is
an error (a half list must not quietly shrink the catalog). Single detail calls may fail; up to a share
they are counted and that profession is left out, beyond it the run fails. A detail whose `kldb2010` is
missing or malformed is skipped and counted, never guessed: a wrong code would put a profession into the
wrong demand snapshot without anyone noticing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from ty_pipeline.clients.http_retry import KeyedJsonClient, RetryPolicy, SourceError
from ty_pipeline.clients.rate_limit import RateLimit, RateLimiter
from ty_pipeline.domain.concurrency import Bounded, Finished
from ty_pipeline.domain.kldb_catalog import BERUFENET_ID_PREFIX, QUALIFICATION_LEVELS, NamedProfession
from ty_pipeline.domain.progress import Progress
from ty_pipeline.domain.text_clean import clean_text
from ty_pipeline.domain.urls import redact_url

DEFAULT_BERUFENET_BASE_URL = "https://rest.arbeitsagentur.de"
PUBLIC_API_KEY = "infosysbub-berufenet"  # a fixed public client id, not a secret (docs/wire_formats.md §3.3)
USER_AGENT = "ty-pipeline/0.1 (profession catalog; +https://github.com/ty-pipeline)"
BERUFE_PATH = "/infosysbub/bnet/pc/v1/berufe"
MAX_LIST_PAGES = 1000  # ≈180 expected; a server that keeps linking "next" must not keep us forever
MAX_EXAMPLES = 5
# The polite default pace. BERUFENET publishes no limit; it is served by rest.arbeitsagentur.de, the host
# the nightly Jobsuche fetch already calls at up to 30 requests/s. One request every 0.2 s is in the middle
# of the 0.1-0.3 s public clients keep between detail calls to the Bundesagentur's REST APIs
# (docs/wire_formats.md §1.7), and a catalog build is rare (once, and after a catalog change), so the
# ≈3,750 calls may take ≈13 minutes rather than hurry. A burst of 2 lets the first list page and detail go
# without waiting; 4 in flight is the number of detail threads.
DEFAULT_REQUESTS_PER_S = 5.0
DEFAULT_BURST = 2
DEFAULT_WORKERS = 4

# "B 28212": the letter names the catalogue, the five digits are the KldB 2010 Berufsgattung. Nothing
# shorter or longer is accepted: zero-padding "B 2821" would invent a code (normalise_kldb pads, which is
# right for the KldB CSV's lost leading zeros but not here). ASCII digits only: `\d` would also take
# "٢٨٢١٢" (Arabic-Indic digits), a code no other catalog entry, snapshot or KldB reader would match.
_KLDB2010 = re.compile(r"^(?:[A-Z]\s*)?([0-9]{5})$")
_BERUFS_ID = re.compile(r"^\d{1,13}$")


class BerufenetError(SourceError):
    """The BERUFENET list could not be read completely, or too many details failed: catalog unchanged."""


@dataclass(frozen=True)
class BerufenetFetch:
    """What one walk over the API gave: the professions and the counts the catalog asset reports."""

    base_url: str
    professions: tuple[NamedProfession, ...]
    pages: int  # list pages read
    listed: int  # distinct professions in the list
    reported_total: int | None  # `page.totalElements` of the first page, to compare with `listed`
    fetched: int  # detail records received (including those skipped below)
    skipped_no_kldb: int  # details whose kldb2010 is missing or malformed
    failed: int  # detail calls that failed after retries (or answered something unusable)
    skipped_no_name: int = 0  # details (and list entries) without any kurzBezeichnungNeutral
    invalid_list_entries: int = 0  # list items without a usable id
    skipped_examples: tuple[str, ...] = ()
    failed_examples: tuple[str, ...] = ()
    seconds: float = 0.0
    pacing: dict[str, float | int | str | None] = field(default_factory=dict)  # `RateLimiter.summary()`


def parse_kldb2010(value: object) -> str | None:
    """The five-digit KldB code of a `kldb2010` field ("B 28212" -> "28212"), or None if unusable."""
    if not isinstance(value, str):
        return None
    match = _KLDB2010.match(value.strip())
    if match is None:
        return None
    code = match.group(1)
    return code if int(code[4]) in QUALIFICATION_LEVELS else None


def berufs_id(value: object) -> str | None:
    """The Berufs-ID as a digit string (the API sends integers; a digit string is accepted too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value >= 0 else None
    if isinstance(value, str) and _BERUFS_ID.match(value.strip()):
        return str(int(value.strip()))
    return None


def unwrap_detail(payload: Any, wanted_id: str) -> dict[str, Any] | None:
    """The detail object: the API answers a one-element array; a bare object is accepted as well."""
    if isinstance(payload, dict):
        return payload
    if isinstance(payload, list):
        objects = [p for p in payload if isinstance(p, dict)]
        # Should the array ever hold more than one object, take the one that is the profession asked for.
        return next((p for p in objects if berufs_id(p.get("id")) == wanted_id), objects[0] if objects else None)
    return None


def profession_name(raw: object) -> str:
    """A `kurzBezeichnungNeutral` as the catalog stores it: like every API string, entities decoded once
    and nothing left that cannot be stored (NUL, control characters, lone surrogates; domain/text_clean.py),
    then white space collapsed as in every catalog name. "" when nothing is left."""
    return " ".join(clean_text(str(raw)).split())


SKIP_NO_KLDB = "no_kldb"
SKIP_NO_NAME = "no_name"


def profession_from_detail(
    wanted_id: str, detail: dict[str, Any], list_name: str | None
) -> NamedProfession | tuple[str, str]:
    """The profession, or (skip kind, "id: why") when the record cannot be one."""
    kldb = parse_kldb2010(detail.get("kldb2010"))
    if kldb is None:
        raw = detail.get("kldb2010", "<missing>")
        return SKIP_NO_KLDB, f"{wanted_id}: kldb2010 {raw!r}"
    name = profession_name(detail.get("kurzBezeichnungNeutral") or list_name or "")
    if not name:  # also a name that was nothing but control characters: skipped and counted, never stored
        return SKIP_NO_NAME, f"{wanted_id}: no kurzBezeichnungNeutral"
    return NamedProfession(f"{BERUFENET_ID_PREFIX}{wanted_id}", name, kldb, int(kldb[4]), kldb[:2])


@dataclass
class _Listing:
    ids: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    pages: int = 0
    reported_total: int | None = None
    invalid: int = 0


class BerufenetClient(KeyedJsonClient):
    """The BERUFENET list and detail endpoints with the public client id."""

    default_api_key = PUBLIC_API_KEY
    default_user_agent = USER_AGENT

    @staticmethod
    def list_path(page: int) -> str:
        # Spelled out rather than passed as `params`: requests would send `suchwoerter=%2A`, and the
        # documented request is the literal `*`.
        return f"{BERUFE_PATH}?suchwoerter=*&page={page}"

    def list_url(self, page: int) -> str:
        return f"{self.base_url}{self.list_path(page)}"

    def shown_list_url(self, page: int) -> str:
        """`list_url` as errors show it: the configured base URL reduced to scheme://host:port (no user,
        password or query of TY_BERUFENET_API_URL), then the documented path and query."""
        return f"{redact_url(self.base_url)}{self.list_path(page)}"

    # Both calls go through `fetch_json`, which passes this client's limiter: no request can skip the pace.
    def list_page(self, page: int) -> dict[str, Any]:
        try:
            _, payload = self.fetch_json("GET", self.list_path(page), what=f"BERUFENET list page {page}")
        except SourceError as exc:
            raise BerufenetError(
                f"BERUFENET list page {page} failed ({self.shown_list_url(page)}): {exc}; the catalog was left unchanged",
                status=exc.status, body=exc.body,
            ) from exc
        if not isinstance(payload, dict):
            raise BerufenetError(
                f"BERUFENET list page {page} ({self.shown_list_url(page)}) is not a HAL object: {str(payload)[:200]}"
            )
        return payload

    def detail(self, profession_id: str) -> Any:
        _, payload = self.fetch_json("GET", f"{BERUFE_PATH}/{profession_id}", what=f"BERUFENET detail {profession_id}")
        return payload


def list_professions(client: BerufenetClient, *, log: Callable[[str], None] = lambda _m: None) -> _Listing:
    """Walk the list until the last page: no `_links.next`, `number + 1 >= totalPages`, or an empty page."""
    listing = _Listing()
    seen: set[str] = set()
    for page in range(MAX_LIST_PAGES):
        payload = client.list_page(page)
        listing.pages += 1
        # Spring's HAL leaves `_embedded` out entirely when a page is empty.
        items = (payload.get("_embedded") or {}).get("berufSucheList") or []
        info = payload.get("page") or {}
        if listing.reported_total is None and isinstance(info.get("totalElements"), int):
            listing.reported_total = info["totalElements"]
        for item in items:
            pid = berufs_id(item.get("id")) if isinstance(item, dict) else None
            if pid is None:
                listing.invalid += 1
                continue
            if pid in seen:  # an entry can move across a page boundary while we page; fetch it once
                continue
            seen.add(pid)
            listing.ids.append(pid)
            listing.names[pid] = str(item.get("kurzBezeichnungNeutral") or "")
        raw_number = info.get("number")
        number = raw_number if isinstance(raw_number, int) else page
        total_pages = info.get("totalPages")
        if (not items or "next" not in (payload.get("_links") or {})
                or (isinstance(total_pages, int) and number + 1 >= total_pages)):
            log(f"BERUFENET list: {len(listing.ids)} professions on {listing.pages} pages "
                f"(API reports {listing.reported_total})")
            return listing
    raise BerufenetError(
        f"BERUFENET list did not end after {MAX_LIST_PAGES} pages ({client.shown_list_url(MAX_LIST_PAGES)})"
    )


def fetch_berufenet(
    base_url: str = DEFAULT_BERUFENET_BASE_URL,
    *,
    api_key: str = PUBLIC_API_KEY,
    workers: int = DEFAULT_WORKERS,
    requests_per_s: float | None = DEFAULT_REQUESTS_PER_S,
    burst: int = DEFAULT_BURST,
    max_failed_share: float = 0.02,
    policy: RetryPolicy | None = None,
    timeout_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda _m: None,
    progress_every_s: float = 30.0,
) -> BerufenetFetch:
    """List every profession, then fetch the details on `workers` threads. Every request of the fetch
    starts at no more than `requests_per_s` (after a `burst`), with at most `workers` open at once;
    `requests_per_s=None` leaves the calls unpaced (for tests of everything else)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0.0 <= max_failed_share <= 1.0:
        raise ValueError(f"max_failed_share must be between 0 and 1, got {max_failed_share}")
    limiter = (None if requests_per_s is None
               else RateLimiter(RateLimit(requests_per_s, burst, workers), clock=clock, sleep=sleep))
    started = time.monotonic()
    client = BerufenetClient(base_url, api_key=api_key, timeout_s=timeout_s, policy=policy, pool_size=workers,
                             sleep=sleep, limiter=limiter)
    try:
        listing = list_professions(client, log=log)
        if not listing.ids:
            raise BerufenetError(f"BERUFENET list at {client.shown_list_url(0)} returned no professions; "
                                 "the catalog was left unchanged")
        details = _fetch_details(client, listing, workers=workers, max_failed_share=max_failed_share, log=log,
                                 progress_every_s=progress_every_s)
    finally:
        client.close()
    professions: list[NamedProfession] = []
    skipped: dict[str, list[str]] = {SKIP_NO_KLDB: [], SKIP_NO_NAME: []}
    for pid in listing.ids:  # list order, so the catalog is the same on every run
        detail = details.received.get(pid)
        if detail is None:
            continue
        outcome = profession_from_detail(pid, detail, listing.names.get(pid))
        if isinstance(outcome, NamedProfession):
            professions.append(outcome)
        else:
            skipped[outcome[0]].append(outcome[1])
    if not professions:
        # Every detail received and none usable: the format changed, not the professions.
        raise BerufenetError(f"none of {len(details.received)} BERUFENET details had a usable kldb2010 "
                             f"(e.g. {skipped[SKIP_NO_KLDB][:MAX_EXAMPLES]}); the catalog was left unchanged")
    return BerufenetFetch(
        base_url=redact_url(client.base_url),  # shown in logs and metadata: scheme://host:port only
        professions=tuple(professions),
        pages=listing.pages,
        listed=len(listing.ids),
        reported_total=listing.reported_total,
        fetched=len(details.received),
        skipped_no_kldb=len(skipped[SKIP_NO_KLDB]),
        failed=len(details.failed),
        skipped_no_name=len(skipped[SKIP_NO_NAME]),
        invalid_list_entries=listing.invalid,
        skipped_examples=tuple((skipped[SKIP_NO_KLDB] + skipped[SKIP_NO_NAME])[:MAX_EXAMPLES]),
        failed_examples=tuple(details.failed[:MAX_EXAMPLES]),
        seconds=round(time.monotonic() - started, 2),
        pacing=limiter.summary() if limiter is not None else {},
    )


@dataclass
class _Details:
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # "id: reason"


def _fetch_details(
    client: BerufenetClient,
    listing: _Listing,
    *,
    workers: int,
    max_failed_share: float,
    log: Callable[[str], None],
    progress_every_s: float,
) -> _Details:
    ids = listing.ids
    allowed = max_failed_share * len(ids)
    out = _Details()
    progress = Progress("BERUFENET details", len(ids), log, every_s=progress_every_s)

    # A bounded window of submitted calls instead of all ≈3,570 at once: when the failure limit is passed
    # the run stops within `2 * workers` calls rather than after every queued call was tried with retries.
    with Bounded(client.detail, ids, workers=workers, in_flight=2 * workers, name="berufenet") as run:
        for done in run:
            _record(out, done)
            progress.step()
            if len(out.failed) > allowed:
                raise BerufenetError(
                    f"{len(out.failed)} of {len(ids)} BERUFENET detail calls failed, more than the "
                    f"{max_failed_share:.1%} tolerated (e.g. {out.failed[:MAX_EXAMPLES]}); "
                    "the catalog was left unchanged"
                )
    return out


def _record(out: _Details, done: Finished[str, Any]) -> None:
    pid = done.item
    try:
        payload = done.result()
    except (SourceError, requests.RequestException) as exc:  # e.g. a body cut mid-chunk
        out.failed.append(f"{pid}: {exc}"[:300])
        return
    detail = unwrap_detail(payload, pid)
    if detail is None:
        out.failed.append(f"{pid}: unusable detail answer {str(payload)[:100]}")
    else:
        out.received[pid] = detail
