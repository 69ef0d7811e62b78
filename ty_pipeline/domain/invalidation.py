"""Why a posting is no longer usable, and the stale-sweep rules (docs/domain_rules.md §9).

One enum instead of the replaced system's four spellings of "removed from AA". A re-sighted posting
is revalidated and its reason cleared, so there is no soft-delete/partial-index duplicate cycle.
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


@dataclass(frozen=True)
class StaleRules:
    aa_min_age_days: int = 30
    aa_unseen_days: int = 7
    db_unseen_days: int = 2
    db_max_share: float = 0.5  # a sweep that would hit more than this share is an API problem, not churn


def aa_cutoffs(now: datetime, rules: StaleRules) -> tuple[datetime, datetime]:
    """(first_seen_before, last_seen_before) for the Jobsuche sweep."""
    return now - timedelta(days=rules.aa_min_age_days), now - timedelta(days=rules.aa_unseen_days)


def db_cutoff(now: datetime, rules: StaleRules) -> datetime:
    return now - timedelta(days=rules.db_unseen_days)


def db_sweep_allowed(candidates: int, active: int, rules: StaleRules) -> bool:
    """Deutsche Bank sweep guard: skip when it would invalidate more than half of the active postings."""
    if candidates == 0:
        return True
    return active > 0 and candidates / active <= rules.db_max_share
