"""How much of a partition's LLM scope has a saved result: the completeness checks' arithmetic.

In scope: valid postings of the covered sources with a usable description (postings without one are
written as `skipped_no_description` and cannot be summarised, so they do not count against an asset).
Done: a success status (`passed`, `passed_after_improve`, `ok`). Everything else is named: failed
(grading or LLM errors) and pending (no saved result yet, e.g. beyond a run's cap).
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from ty_pipeline.domain.llm_selection import SUCCESS_STATUSES, Candidate, LlmStatus, has_usable_description

EXAMPLES = 5


@dataclass(frozen=True)
class Completeness:
    in_scope: int
    done: int
    threshold: float
    by_status: dict[str, int] = field(default_factory=dict)  # in-scope postings per saved status, or "pending"
    pending_examples: list[str] = field(default_factory=list)  # "source:external_id (posting_id N)"
    failed_examples: list[str] = field(default_factory=list)
    # (posting_id, "pending" or the saved failure status) of the first offenders, pending ones first.
    offenders: list[tuple[int, str]] = field(default_factory=list)
    pending: int = 0
    failed: int = 0

    @property
    def share(self) -> float:
        return 1.0 if self.in_scope == 0 else self.done / self.in_scope

    @property
    def passed(self) -> bool:
        return self.share >= self.threshold


def completeness(candidates: Sequence[Candidate], threshold: float) -> Completeness:
    """`candidates` as `load_candidates` returns them (newest first, with their saved status)."""
    by_status: Counter[str] = Counter()
    pending: list[str] = []
    failed: list[str] = []
    pending_ids: list[tuple[int, str]] = []
    failed_ids: list[tuple[int, str]] = []
    done = 0
    in_scope = 0
    for c in candidates:
        if not has_usable_description(c.description):
            continue
        in_scope += 1
        label = f"{c.source}:{c.external_id} (posting_id {c.posting_id})"
        if c.saved_status in SUCCESS_STATUSES:
            done += 1
            by_status[str(c.saved_status)] += 1
        elif c.saved_status is None or c.saved_status == LlmStatus.SKIPPED_NO_DESCRIPTION:
            # A skip saved before the description arrived is pending work now, not a result.
            by_status["pending"] += 1
            pending.append(label)
            pending_ids.append((c.posting_id, "pending"))
        else:
            by_status[str(c.saved_status)] += 1
            failed.append(label)
            failed_ids.append((c.posting_id, str(c.saved_status)))
    return Completeness(
        in_scope=in_scope, done=done, threshold=threshold, by_status=dict(sorted(by_status.items())),
        pending_examples=pending[:EXAMPLES], failed_examples=failed[:EXAMPLES],
        offenders=(pending_ids + failed_ids)[:EXAMPLES], pending=len(pending), failed=len(failed),
    )
