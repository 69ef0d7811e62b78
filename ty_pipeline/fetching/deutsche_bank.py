"""Fetch the Deutsche Bank listing (it has no date filter) and keep the partition day's postings.

Items without a readable publication date match no partition day; they are handed back apart
(`SourceFetch.undated`) for the run to file under the day first seen (domain/undated.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from ty_pipeline.clients.deutsche_bank import DeutscheBankClient
from ty_pipeline.clients.http_retry import SourceError
from ty_pipeline.domain.deutsche_bank_format import normalize_db_item
from ty_pipeline.domain.jobsuche_format import MalformedResponse
from ty_pipeline.domain.posting_record import Source
from ty_pipeline.fetching.result import SourceFetch


def fetch_deutsche_bank(
    client: DeutscheBankClient,
    partition_date: date,
    *,
    page_size: int = 100,
    country_ids: list[str] | None = None,
    max_items: int = 5000,
    log: Callable[[str], None] = lambda _m: None,
) -> SourceFetch:
    """Page through every listed posting. All of them count as "seen" (the listing is complete), so
    Deutsche Bank's stale sweep can run after a successful fetch. Pages are paced by the client's rate
    limiter. Items without a readable publication date go to `undated`: the caller files them
    (domain/undated.py)."""
    result = SourceFetch(source=str(Source.DEUTSCHE_BANK))
    seen: set[str] = set()
    first = 1
    try:
        while first <= max_items:
            page = client.search(first, page_size, country_ids)
            if first == 1 and page.total is not None:
                result.reported_total = page.total
            if not page.items:
                break
            for item in page.items:
                result.fetched += 1
                try:
                    record = normalize_db_item(item)
                except MalformedResponse as exc:
                    result.malformed += 1
                    log(f"Deutsche Bank: skipped unreadable item: {exc}")
                    continue
                if record.external_id in seen:
                    result.duplicates += 1
                    continue
                seen.add(record.external_id)
                if record.published_date is None:
                    # Equal to no partition date: left out here, it would be stored nowhere.
                    result.undated.append(record)
                elif record.published_date == partition_date:
                    result.records.append(record)
                else:
                    result.seen_elsewhere.append((record.source, record.external_id))
            first += len(page.items)
            if len(page.items) < page_size or (page.total is not None and first > page.total):
                break
        else:
            result.errors.append(f"Deutsche Bank: stopped at the safety cap of {max_items} items")
    except (SourceError, MalformedResponse) as exc:
        result.errors.append(f"Deutsche Bank search at FirstItem={first}: {exc}")
        log(f"Deutsche Bank search failed at FirstItem={first}: {exc}")
        return result
    result.complete = not result.errors
    log(
        f"Deutsche Bank: {result.fetched} listed, {result.kept} published on {partition_date}, "
        f"{len(result.undated)} without a readable publication date"
    )
    return result
