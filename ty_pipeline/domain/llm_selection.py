"""Which postings an LLM asset run works on: memoized by input hash, retried within bounds, capped.

A saved row is reused when its input hash equals the hash computed now and its status is terminal.
`llm_error` rows of the same hash are retried on later runs until `max_attempts` runs have tried them
(the replaced system re-selected failures forever, docs/domain_rules.md §10.3). Work is ordered newest first
and capped per run; what the cap leaves out stays pending for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from ty_pipeline.domain.description_status import MIN_DESCRIPTION_CHARS
from ty_pipeline.domain.llm_hashing import location_text, posting_text


class LlmStatus(StrEnum):
    PASSED = "passed"  # summaries: both graders passed the first extraction
    PASSED_AFTER_IMPROVE = "passed_after_improve"
    FAILED_GRADING = "failed_grading"  # terminal for this input hash: the same input would fail again
    OK = "ok"  # skills, IHL
    LLM_ERROR = "llm_error"  # invalid answers or transport errors; retried up to max_attempts runs
    SKIPPED_NO_DESCRIPTION = "skipped_no_description"


LLM_MAX_ATTEMPTS = 3
"""Runs that may try one posting before its `llm_error` is final: the LLM run config's default, and what
`ty-pipeline status` counts as out of attempts (one constant, so the two cannot disagree)."""

SUCCESS_STATUSES = frozenset({LlmStatus.PASSED, LlmStatus.PASSED_AFTER_IMPROVE, LlmStatus.OK})
TERMINAL_STATUSES = frozenset(
    {LlmStatus.PASSED, LlmStatus.PASSED_AFTER_IMPROVE, LlmStatus.FAILED_GRADING, LlmStatus.OK,
     LlmStatus.SKIPPED_NO_DESCRIPTION}
)


@dataclass(frozen=True)
class Candidate:
    """A valid posting of the partition in scope, with its description and its saved result, if any."""

    posting_id: int
    source: str
    external_id: str
    title: str | None
    employer: str | None
    city: str | None
    state: str | None
    country: str | None
    published_date: date | None
    description: str | None
    saved_status: str | None = None
    saved_hash: str | None = None
    saved_attempts: int = 0


@dataclass(frozen=True)
class WorkItem:
    posting_id: int
    source: str
    external_id: str
    text: str  # exactly what the prompts get as {posting}
    input_hash: str
    attempt: int  # 1 for a new input; previous attempts + 1 when retrying the same input
    truncated: bool = False


@dataclass
class Plan:
    to_compute: list[WorkItem] = field(default_factory=list)  # this run, newest first
    pending: list[WorkItem] = field(default_factory=list)  # beyond the cap: left for the next run
    skipped: list[WorkItem] = field(default_factory=list)  # no usable description; written without a call
    cached: int = 0  # saved result with the same input hash and a terminal status
    exhausted: int = 0  # llm_error with the same input hash and max_attempts used up
    retries: int = 0  # llm_error rows in to_compute (same input, attempts left)

    @property
    def in_scope(self) -> int:
        return len(self.to_compute) + len(self.pending) + len(self.skipped) + self.cached + self.exhausted


def has_usable_description(description: str | None) -> bool:
    return description is not None and len(description.strip()) >= MIN_DESCRIPTION_CHARS


def plan_work(
    candidates: Sequence[Candidate],
    *,
    hash_for: Callable[[str], str],
    max_attempts: int,
    max_postings: int | None,
    max_description_chars: int,
) -> Plan:
    """Split the candidates; `candidates` must already be ordered newest first."""
    plan = Plan()
    for c in candidates:
        usable = has_usable_description(c.description)
        text = posting_text(
            title=c.title,
            employer=c.employer,
            location=location_text(c.city, c.state, c.country),
            description=c.description if usable and c.description else "",
            max_description_chars=max_description_chars,
        )
        key = hash_for(text.text)
        same_input = c.saved_hash == key
        if not usable:
            if same_input and c.saved_status == LlmStatus.SKIPPED_NO_DESCRIPTION:
                plan.cached += 1
            else:
                plan.skipped.append(WorkItem(c.posting_id, c.source, c.external_id, text.text, key, 0))
            continue
        if same_input and c.saved_status in TERMINAL_STATUSES:
            plan.cached += 1
            continue
        attempt = 1
        if same_input and c.saved_status == LlmStatus.LLM_ERROR:
            if c.saved_attempts >= max_attempts:
                plan.exhausted += 1
                continue
            attempt = c.saved_attempts + 1
        item = WorkItem(c.posting_id, c.source, c.external_id, text.text, key, attempt, text.truncated)
        if max_postings is not None and max_postings > 0 and len(plan.to_compute) >= max_postings:
            plan.pending.append(item)
        else:
            plan.to_compute.append(item)
            plan.retries += attempt > 1
    return plan
