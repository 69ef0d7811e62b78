"""The one vocabulary of `berufenet_mappings.status` (and of the learned-alias and failed-title tables).

The replaced system grew 20 spellings of its status column, some never written, one (`'null'`) a string
standing for NULL (docs/domain_rules.md §6.3). Every status written anywhere comes from this enum.
"""

from __future__ import annotations

from enum import StrEnum


class BerufenetStatus(StrEnum):
    """How a posting's title got (or did not get) its profession. Ordered cheapest stage first."""

    BERUF_LABEL = "beruf_label"  # the Jobsuche `beruf` label is a catalog name or alias
    EXACT = "exact"  # the cleaned title is one profession's name or spelled-out form
    ALIAS_UNANIMOUS = "alias_unanimous"  # several professions, one domain, one qualification level
    ALIAS_MAJORITY = "alias_majority"  # several professions, one domain, the most common level
    LEARNED = "learned"  # resolved by an earlier run (embedding, LLM or retry) and remembered
    EMBEDDING_HIGH = "embedding_high"  # nearest catalog name above the accept threshold
    LLM_VERIFIED = "llm_verified"  # uncertain band: the LLM picked one of the top-k candidates
    LLM_DESCRIPTION_RETRY = "llm_description_retry"  # failed title resolved with description context
    LLM_REJECTED = "llm_rejected"  # uncertain band: the LLM said none of the candidates is this job
    EMBEDDING_UNVERIFIED = "embedding_unverified"  # uncertain band, LLM verification switched off
    LLM_UNAVAILABLE = "llm_unavailable"  # uncertain band, LLM verification on but Ollama not usable
    NO_MATCH = "no_match"  # nearest catalog name below the verify threshold
    NO_TITLE = "no_title"  # nothing job-like left after cleaning, and no usable `beruf` label
    ERROR = "error"  # this title's classification failed (e.g. an invalid LLM answer twice)


RESOLVED = frozenset(
    {
        BerufenetStatus.BERUF_LABEL,
        BerufenetStatus.EXACT,
        BerufenetStatus.ALIAS_UNANIMOUS,
        BerufenetStatus.ALIAS_MAJORITY,
        BerufenetStatus.LEARNED,
        BerufenetStatus.EMBEDDING_HIGH,
        BerufenetStatus.LLM_VERIFIED,
        BerufenetStatus.LLM_DESCRIPTION_RETRY,
    }
)
"""Statuses that come with a profession (berufenet_id, kldb, qualification level filled)."""

SETTLED_FAILURES = frozenset(
    {BerufenetStatus.NO_MATCH, BerufenetStatus.LLM_REJECTED, BerufenetStatus.EMBEDDING_UNVERIFIED}
)
"""Unresolved outcomes that the same settings would reproduce: remembered per title so a title is not
classified twice; re-evaluated only when the settings fingerprint (catalog, model, thresholds) changes."""

RETRY_NEXT_RUN = frozenset({BerufenetStatus.LLM_UNAVAILABLE, BerufenetStatus.ERROR})
"""Unresolved because something was down or broke: the next run of the partition tries these again."""

UNRESOLVED = SETTLED_FAILURES | RETRY_NEXT_RUN
"""Titles with these statuses become `berufenet_failed_titles` partitions for the description retry."""

LEARNABLE = frozenset(
    {BerufenetStatus.EMBEDDING_HIGH, BerufenetStatus.LLM_VERIFIED, BerufenetStatus.LLM_DESCRIPTION_RETRY}
)
"""Decisions worth remembering as a learned alias. Catalog lookups are not stored (the catalog has them)
and neither are `beruf` labels: a label describes one posting, not every posting with that title."""
