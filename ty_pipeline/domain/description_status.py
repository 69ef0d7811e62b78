"""Outcome vocabulary of the description fetch, and the two-strikes retry rule."""

from __future__ import annotations

from enum import StrEnum

MAX_DESCRIPTION_ATTEMPTS = 2  # the replaced system's "2 strikes" (docs/domain_rules.md §1.2)
MIN_DESCRIPTION_CHARS = 100


class DescriptionStatus(StrEnum):
    OK = "ok"
    TOO_SHORT = "too_short"  # real text, but under MIN_DESCRIPTION_CHARS
    EXTERNAL_PARTNER = "external_partner"  # the text lives on a partner board (`externeURL`)
    NOT_FOUND = "not_found"  # the source says the posting is gone; the posting is invalidated
    FAILED = "failed"  # transient failure; retried on a later run
    GAVE_UP = "gave_up"  # failed MAX_DESCRIPTION_ATTEMPTS times; not retried any more
    # The text was fetched but the warehouse refused it (issue #9: a NUL byte crashed every rerun).
    # Final, with the reason in `last_error`: fetching it again would only fail the same way.
    UNSTORABLE = "unstorable"


TERMINAL = {DescriptionStatus.OK, DescriptionStatus.TOO_SHORT, DescriptionStatus.EXTERNAL_PARTNER,
            DescriptionStatus.NOT_FOUND, DescriptionStatus.GAVE_UP, DescriptionStatus.UNSTORABLE}


def status_after_failure(attempts_so_far: int) -> DescriptionStatus:
    """A failed attempt: retry later unless this was the last allowed one."""
    return DescriptionStatus.GAVE_UP if attempts_so_far + 1 >= MAX_DESCRIPTION_ATTEMPTS else DescriptionStatus.FAILED


def status_for_text(text: str) -> DescriptionStatus:
    return DescriptionStatus.OK if len(text) >= MIN_DESCRIPTION_CHARS else DescriptionStatus.TOO_SHORT
