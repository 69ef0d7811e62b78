"""Why a posting is no longer usable, and the stale-sweep rules (docs/domain_rules.md §9).

One enum instead of the replaced system's four spellings of "removed from AA". A posting that was
only *unseen* (stale) is revalidated by the next listing that carries it, its reason cleared, so there is
no soft-delete/partial-index duplicate cycle. A posting the source itself declared gone (detail 404, or
Deutsche Bank dropping it from a complete listing) is different: listings lag behind the detail endpoint,
so a re-sighting only makes it due for a detail re-check, and only a successful detail call revives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class InvalidationReason(StrEnum):
    STALE_UNSEEN = "stale_unseen"  # Jobsuche: older than 30 days and not seen for 7
    REMOVED_FROM_SOURCE = "removed_from_source"  # Deutsche Bank: not listed by the API for 2+ days
    NOT_FOUND_AT_SOURCE = "not_found_at_source"  # detail call says the posting does not exist any more


REASON_TEXT: dict[InvalidationReason, str] = {
    InvalidationReason.STALE_UNSEEN: "Stale: first seen over 30 days ago and unseen for 7 days",
    InvalidationReason.REMOVED_FROM_SOURCE: "Removed from source: not listed by the API for 2+ days",
    InvalidationReason.NOT_FOUND_AT_SOURCE: "Not found at source: the detail endpoint says it is gone",
}


# Reasons a listing alone must not undo: the source said "gone", and its search index lags behind.
HELD_UNTIL_RECHECK = frozenset({InvalidationReason.NOT_FOUND_AT_SOURCE, InvalidationReason.REMOVED_FROM_SOURCE})


@dataclass(frozen=True)
class RecheckRules:
    """When a held posting that was listed again gets another detail call (docs/domain_rules.md §9)."""

    after_days: int = 3  # the Jobsuche index lags by days; asking again sooner just repeats the 404
    max_rechecks: int = 2  # then the posting stays invalidated for good: no endless detail calls


RECHECK_RULES = RecheckRules()


def recheck_due_at(now: datetime, rules: RecheckRules = RECHECK_RULES) -> datetime:
    return now + timedelta(days=rules.after_days)


@dataclass(frozen=True)
class StaleRules:
    aa_min_age_days: int = 30
    aa_unseen_days: int = 7
    db_unseen_days: int = 2
    db_max_share: float = 0.5  # a sweep that would hit more than this share is an API problem, not churn
    aa_max_share: float = 0.5  # the same guard for the Jobsuche sweep


def aa_cutoffs(now: datetime, rules: StaleRules) -> tuple[datetime, datetime]:
    """(first_seen_before, last_seen_before) for the Jobsuche sweep."""
    return now - timedelta(days=rules.aa_min_age_days), now - timedelta(days=rules.aa_unseen_days)


def db_cutoff(now: datetime, rules: StaleRules) -> datetime:
    return now - timedelta(days=rules.db_unseen_days)


def sweep_allowed(candidates: int, active: int, max_share: float) -> bool:
    """Sweep guard: skip when it would invalidate more than `max_share` of the active postings."""
    if candidates == 0:
        return True
    return active > 0 and candidates / active <= max_share
