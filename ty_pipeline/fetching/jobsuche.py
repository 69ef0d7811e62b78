"""Fetch one day's Jobsuche postings: 16 per-state queries, paged, de-duplicated, filtered by date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from ty_pipeline.clients.http_retry import SourceError
from ty_pipeline.clients.jobsuche import JobsucheClient, SearchWindowExceeded
from ty_pipeline.domain.jobsuche_format import MalformedResponse, item_refnr, normalize_search_item
from ty_pipeline.domain.posting_record import Source
from ty_pipeline.domain.states import STATES, wo_for_state
from ty_pipeline.fetching.result import SourceFetch

RESULT_WINDOW = 10_000  # page*size beyond this answers 400 (docs/wire_formats.md §1.3)
MAX_DAYS_BACK = 100  # `veroeffentlichtseit` accepts 0-100
ANGEBOTSART_ARBEIT = 1  # regular employment; without it course providers' listings appear


def past_result_window(page: int, size: int) -> bool:
    """True when a page lies beyond the 10,000-result window, so its 400 is the end of what is readable."""
    return page * size > RESULT_WINDOW


def days_back_for(partition_date: date, today: date) -> int:
    """`veroeffentlichtseit` that covers the partition date; one extra day absorbs clock/zone skew."""
    return min((today - partition_date).days + 1, MAX_DAYS_BACK)


def fetch_jobsuche(
    client: JobsucheClient,
    partition_date: date,
    *,
    today: date,
    states: tuple[str, ...] = STATES,
    page_size: int = 100,
    log: Callable[[str], None] = lambda _m: None,
) -> SourceFetch:
    """Pages are paced by the client's rate limiter (the resource's `requests_per_s`), not here."""
    result = SourceFetch(source=str(Source.ARBEITSAGENTUR))
    days = (today - partition_date).days
    if days < 0:
        result.errors.append(f"partition {partition_date} is in the future (today is {today})")
        return result
    if days > MAX_DAYS_BACK:
        result.errors.append(
            f"partition {partition_date} is {days} days back; Jobsuche only searches the last {MAX_DAYS_BACK} days"
        )
        return result
    since = days_back_for(partition_date, today)
    seen: set[str] = set()
    complete = True
    for state in states:
        counts = {"fetched": 0, "kept": 0, "reported_total": 0, "duplicates": 0}
        result.per_state[state] = counts
        page = 1
        try:
            while True:
                params = {
                    "wo": wo_for_state(state), "page": page, "size": page_size,
                    "veroeffentlichtseit": since, "angebotsart": ANGEBOTSART_ARBEIT,
                }
                try:
                    search = client.search(params)
                except SearchWindowExceeded as exc:
                    if past_result_window(page, page_size):
                        log(f"Jobsuche {state}: 10,000-result window reached at page {page}")
                        break
                    # Inside the window a 400 is a failed query, not the end: stopping here once lost
                    # 29 of 129 postings of a state while `fetch_complete` passed.
                    raise SourceError(
                        f"400 at page {page} of size {page_size}, inside the {RESULT_WINDOW:,}-result window: {exc}",
                        status=400, body=exc.body,
                    ) from exc
                if page == 1 and search.total is not None:
                    counts["reported_total"] = search.total
                    if search.total > RESULT_WINDOW:
                        result.window_truncated += search.total - RESULT_WINDOW
                        log(f"Jobsuche {state}: {search.total} results, only {RESULT_WINDOW} are readable")
                if not search.items:
                    break
                for item in search.items:
                    counts["fetched"] += 1
                    refnr = item_refnr(item)
                    if refnr is None:
                        result.malformed += 1
                        continue
                    if refnr in seen:
                        counts["duplicates"] += 1
                        continue
                    seen.add(refnr)
                    try:
                        record = normalize_search_item(item, state_hint=state)
                    except MalformedResponse as exc:
                        result.malformed += 1
                        log(f"Jobsuche {state}: skipped unreadable item {refnr}: {exc}")
                        continue
                    if record.published_date == partition_date:
                        result.records.append(record)
                        counts["kept"] += 1
                    else:
                        result.seen_elsewhere.append((record.source, record.external_id))
                # Stop on a short page rather than on a count: a page may repeat items of the previous
                # one (results shift while we page), so counting would stop one page early.
                if len(search.items) < page_size or past_result_window(page + 1, page_size):
                    break
                page += 1
        except (SourceError, MalformedResponse) as exc:
            complete = False
            counts["failed"] = 1  # shows in `per_state_arbeitsagentur` next to the counts
            result.errors.append(f"Jobsuche {state} page {page}: {exc}")
            log(f"Jobsuche {state} failed at page {page}: {exc}")
        result.fetched += counts["fetched"]
        result.duplicates += counts["duplicates"]
        result.reported_total += counts["reported_total"]
        log(f"Jobsuche {state}: {counts['fetched']} fetched, {counts['kept']} published on {partition_date}")
    result.complete = complete
    return result
