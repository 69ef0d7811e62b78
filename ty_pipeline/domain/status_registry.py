"""What "done", "failed" and "pending" mean for each asset: the one registry `ty-pipeline status` reads.

Every asset writes its own status vocabulary (descriptions: `ok`/`gave_up`/...; LLM assets: `passed`,
`llm_error`, ...). The status command must not grow its own opinion of those words in several places,
so this module is the single mapping from (asset, saved status) to an operator's three questions: is it
finished, has it given up, or is work still to come. The SQL that counts rows lives in
`ty_pipeline/warehouse/status_queries.py`; this module stays pure so the rules are tested without a
database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from ty_pipeline.domain.berufenet_status import RESOLVED, RETRY_NEXT_RUN, SETTLED_FAILURES, BerufenetStatus
from ty_pipeline.domain.description_status import MAX_DESCRIPTION_ATTEMPTS, DescriptionStatus
from ty_pipeline.domain.llm_scope import llm_sources as scope_sources
from ty_pipeline.domain.llm_selection import LLM_MAX_ATTEMPTS, LlmStatus


def llm_sources(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The sources the LLM assets cover, read exactly as they read it, so "in scope" agrees with them."""
    return scope_sources(environ)


class Scope(StrEnum):
    """Which postings of a partition an asset is expected to cover (its denominator)."""

    ALL_POSTINGS = "all postings of the partition"
    VALID_POSTINGS = "non-invalidated postings"
    LLM_POSTINGS = "non-invalidated postings of the LLM sources with a description"
    EMBEDDABLE_POSTINGS = "non-invalidated postings whose text has at least 150 characters"
    TITLED_POSTINGS = "non-invalidated postings with a title or a Jobsuche beruf label"
    SNAPSHOT_DATE = "one snapshot per date"


class Outcome(StrEnum):
    DONE = "done"
    FAILED = "failed"  # terminal: no run will try again on its own
    RETRYABLE = "retryable"  # failed with attempts left: the partition's next run tries again
    PENDING = "pending"  # no row yet (or a status word this registry does not know): work still to do


NIGHTLY_RUN_AT = "23:30 Europe/Berlin"
"""When `nightly_pipeline_schedule` runs today's partition (ty_pipeline/automation/schedules.py)."""


@dataclass(frozen=True)
class AssetStatusSpec:
    """How one asset's rows are counted: its table, time column, scope and status words."""

    asset: str
    table: str
    time_column: str
    scope: Scope
    done: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    retryable: frozenset[str] = frozenset()
    max_attempts: int | None = None  # a retryable row with this many attempts is a terminal failure
    requires: tuple[str, ...] = ()  # tables the count reads besides `table`
    unit: str = "postings"

    def classify(self, status: str | None, *, exhausted: bool = False) -> Outcome:
        """One saved row (or its absence: `status` None) as the operator sees it.

        A status this registry does not know counts as pending, never as done: an unknown word is more
        likely a new failure mode than a success, and `by_status` in the report shows it by name. A
        retryable failure is not pending: only a new run of its partition tries it again, so it is
        counted apart and never gets an ETA of its own.
        """
        if status is None:
            return Outcome.PENDING
        if status in self.done:
            return Outcome.DONE
        if status in self.failed:
            return Outcome.FAILED
        if status in self.retryable:
            return Outcome.FAILED if exhausted else Outcome.RETRYABLE
        return Outcome.PENDING

    def knows(self, status: str) -> bool:
        """Whether `status` is a word of this asset's vocabulary (else it is reported as unknown)."""
        return status in self.done | self.failed | self.retryable

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, *self.requires)


def _values(*members: StrEnum) -> frozenset[str]:
    return frozenset(str(m) for m in members)


def _llm_spec(asset: str, done: frozenset[str], failed: frozenset[str] = frozenset()) -> AssetStatusSpec:
    """The three LLM assets share scope, retry rule and time column; only their result words differ."""
    return AssetStatusSpec(
        asset=asset,
        table=asset,
        time_column="updated_at",
        scope=Scope.LLM_POSTINGS,
        done=done,
        failed=failed,
        retryable=_values(LlmStatus.LLM_ERROR),
        max_attempts=LLM_MAX_ATTEMPTS,
        requires=("postings", "job_descriptions"),
    )

ASSETS: dict[str, AssetStatusSpec] = {
    spec.asset: spec
    for spec in (
        # Every fetched posting is the asset's output; invalidated ones are listed in by_status.
        AssetStatusSpec(
            asset="postings",
            table="postings",
            time_column="first_seen_at",
            scope=Scope.ALL_POSTINGS,
            done=frozenset({"valid", "invalidated"}),
        ),
        AssetStatusSpec(
            asset="job_descriptions",
            table="job_descriptions",
            time_column="fetched_at",
            scope=Scope.VALID_POSTINGS,
            done=_values(DescriptionStatus.OK, DescriptionStatus.TOO_SHORT, DescriptionStatus.EXTERNAL_PARTNER),
            # `not_found` invalidates the posting, so it normally leaves the scope; on a posting that was
            # resurrected later it is still final (the fetcher never selects it again).
            failed=_values(DescriptionStatus.GAVE_UP, DescriptionStatus.NOT_FOUND, DescriptionStatus.UNSTORABLE),
            retryable=_values(DescriptionStatus.FAILED),
            max_attempts=MAX_DESCRIPTION_ATTEMPTS,
            requires=("postings",),
        ),
        # A skip is final and leaves nothing to do: done, not a failure.
        _llm_spec(
            "posting_summaries",
            done=_values(LlmStatus.PASSED, LlmStatus.PASSED_AFTER_IMPROVE, LlmStatus.SKIPPED_NO_DESCRIPTION),
            failed=_values(LlmStatus.FAILED_GRADING),
        ),
        _llm_spec("skill_keywords", done=_values(LlmStatus.OK, LlmStatus.SKIPPED_NO_DESCRIPTION)),
        _llm_spec("ihl_scores", done=_values(LlmStatus.OK, LlmStatus.SKIPPED_NO_DESCRIPTION)),
        # The mapper's own vocabulary: resolved statuses come with a profession; settled failures and
        # `no_title` (nothing job-like in the title) are final under the current settings; errors and an
        # unavailable LLM are retried by the partition's next run.
        AssetStatusSpec(
            asset="berufenet_mappings",
            table="berufenet_mappings",
            time_column="updated_at",
            scope=Scope.TITLED_POSTINGS,
            done=_values(*RESOLVED),
            failed=_values(*SETTLED_FAILURES, BerufenetStatus.NO_TITLE),
            retryable=_values(*RETRY_NEXT_RUN),
            requires=("postings",),
        ),
        # No status column: a posting is done when it has a current link to a stored vector (the view's
        # `has_embedding`). Unusable vectors are not recorded, so this asset never reports failures.
        AssetStatusSpec(
            asset="posting_embeddings",
            table="posting_embeddings",
            time_column="updated_at",
            scope=Scope.EMBEDDABLE_POSTINGS,
            done=frozenset({"embedded"}),
            requires=("postings", "job_descriptions", "posting_summaries", "embeddings"),
        ),
        AssetStatusSpec(
            asset="demand_snapshots",
            table="demand_snapshots",
            time_column="computed_at",
            scope=Scope.SNAPSHOT_DATE,
            done=frozenset({"computed"}),
            requires=("postings",),  # a day is expected to have a snapshot only when it has postings
            unit="snapshots",
        ),
    )
}


@dataclass
class Tally:
    """done / failed / retryable / pending for one partition (or a sum of partitions), with the raw statuses."""

    done: int = 0
    failed: int = 0
    retryable: int = 0
    pending: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.done + self.failed + self.retryable + self.pending

    def add(self, outcome: Outcome, status_label: str, count: int) -> None:
        setattr(self, str(outcome), getattr(self, str(outcome)) + count)
        self.by_status[status_label] = self.by_status.get(status_label, 0) + count
        if self.by_status[status_label] == 0:
            del self.by_status[status_label]


def eta_seconds(pending: int, finished_in_window: int, window_hours: float) -> float | None:
    """Seconds until `pending` is worked off at the rate of the last `window_hours`.

    0 when nothing is pending; None when nothing finished in the window (no rate to extrapolate from:
    the asset is idle or stuck, and a made-up ETA would hide that).
    """
    if pending <= 0:
        return 0.0
    if finished_in_window <= 0 or window_hours <= 0:
        return None
    per_second = finished_in_window / (window_hours * 3600.0)
    return pending / per_second


def format_duration(seconds: float) -> str:
    """Coarse on purpose: an ETA is an extrapolation, minutes are the finest honest unit."""
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def describe_eta(pending: int, finished_in_window: int, window_hours: float) -> str:
    eta = eta_seconds(pending, finished_in_window, window_hours)
    if pending <= 0:
        return "nothing pending"
    if eta is None:
        return "no recent throughput"
    return f"ETA {format_duration(eta)}"


@dataclass(frozen=True)
class Backlog:
    """An asset's unfinished work, split by whether a job will do it.

    `scheduled` is pending work in partitions a job will process: today's (the nightly run) and any
    partition with work finished in the throughput window (a run or backfill is on it). Only that work
    gets an ETA. `unscheduled` is pending work in older partitions nothing is running for: it waits
    until someone materializes them. `retryable` rows failed with attempts left; only a new run of
    their partition retries them, so they never get an ETA either.
    """

    scheduled: int
    today: int  # of `scheduled`: in today's partition
    unscheduled: int
    retryable: int
    finished_in_window: int
    window_hours: float

    @property
    def eta_seconds(self) -> float | None:
        if self.scheduled <= 0:
            return None
        return eta_seconds(self.scheduled, self.finished_in_window, self.window_hours)

    def describe(self) -> str:
        """The operator's answer to "when will it be through?", without promising work no job will do."""
        parts: list[str] = []
        if self.scheduled > 0:
            eta = self.eta_seconds
            if eta is not None:
                parts.append(f"ETA {format_duration(eta)} for {self.scheduled} pending in partitions being processed")
            elif self.today == self.scheduled:
                parts.append(f"{self.today} pending in today's partition wait for the nightly run ({NIGHTLY_RUN_AT})")
            else:
                parts.append(f"{self.scheduled} pending, no recent throughput")
        if self.unscheduled > 0:
            parts.append(
                f"no ETA for {self.unscheduled} pending in older partitions no run is working on "
                "(materialize those partitions to process them)"
            )
        if self.retryable > 0:
            parts.append(f"no ETA for {self.retryable} retryable (retried only when their partition runs again)")
        return "; ".join(parts) or "nothing pending"
