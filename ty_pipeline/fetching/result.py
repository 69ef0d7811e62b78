"""What one source's fetch for one partition produced, independent of the source."""

from __future__ import annotations

from dataclasses import dataclass, field

from ty_pipeline.domain.posting_record import PostingRecord


@dataclass
class SourceFetch:
    source: str
    records: list[PostingRecord] = field(default_factory=list)  # published on the partition date
    seen_elsewhere: list[tuple[str, str]] = field(default_factory=list)  # listed, but another date
    # Listed without a readable publication date: no partition matches them, so the run decides against
    # the warehouse where they go (domain/undated.py); they are in neither list above.
    undated: list[PostingRecord] = field(default_factory=list)
    fetched: int = 0  # items read from the API (before de-duplication and date filter)
    duplicates: int = 0  # items dropped because another query/page already returned them
    malformed: int = 0  # items the parser could not read (logged, not saved)
    reported_total: int = 0  # what the API said it had, summed over queries
    window_truncated: int = 0  # results the 10,000 window kept us from reading
    per_state: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    complete: bool = False  # every query paged to its end: safe to treat "unseen" as "removed"

    @property
    def kept(self) -> int:
        return len(self.records)
