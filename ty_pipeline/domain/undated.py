"""Where a posting listed without a readable publication date goes (docs/domain_rules.md §1.4).

Partitions are publication days, and the Deutsche Bank listing has no date filter: the fetch files each
item under its `PublicationStartDate`. An item whose date is missing or unreadable matches no day, and
used to be stored in no partition at all, silently. The replaced system stored every listed Deutsche Bank
posting when it first saw it (it kept no publication date), so the rule follows it:

* stored once, in the partition of the day it is first seen: only a run of today's partition (Berlin
  date) stores it; a backfill of an older day would file it under a day it was not seen on;
* `published_date` stays NULL: no date is invented, and a known posting's date is never overwritten
  with NULL (a listing without a date is only a sighting);
* once stored, any run's listing only marks it seen, exactly like a posting of another day, so the
  stale sweep keeps it alive while it is listed and removes it two days after it leaves.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date

from ty_pipeline.domain.posting_record import PostingRecord


@dataclass(frozen=True)
class UndatedPlacement:
    store: list[PostingRecord] = field(default_factory=list)  # new: filed under today's partition now
    seen: list[tuple[str, str]] = field(default_factory=list)  # already stored: a sighting only
    deferred: list[tuple[str, str]] = field(default_factory=list)  # new, but this run is a backfill


def place_undated(
    undated: Sequence[PostingRecord], stored: Collection[tuple[str, str]], *, day: date, today: date
) -> UndatedPlacement:
    """Split undated postings of a run of partition `day` by what the warehouse already holds (`stored`,
    as (source, external_id)). Deferred ones are stored by the next run of today's partition that
    still finds them listed."""
    placement = UndatedPlacement()
    for record in undated:
        key = (str(record.source), record.external_id)
        if key in stored:
            placement.seen.append(key)
        elif day == today:
            placement.store.append(record)
        else:
            placement.deferred.append(key)
    return placement
