"""Audits of saved LLM outputs for a partition: what the asset checks report and block on.

Each audit takes what the warehouse holds (posting id -> saved value) and returns the offending
posting ids per problem code, so a failing check names the postings a person should look at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict

from ty_pipeline.domain.degenerate import (
    REPETITION_CODES,
    TEMPLATE_CODES,
    detect_degenerate,
    detect_filler,
    detect_refusal,
    detect_repetition,
    detect_template_artifacts,
    find_duplicate_outputs,
    uniform_scores,
)
from ty_pipeline.domain.ihl import category_for_score

DUPLICATE_OUTPUT = "duplicate_output"
NOT_A_STRING_LIST = "not_a_string_list"
EMPTY_LIST = "empty_list"
DUPLICATE_SKILL = "duplicate_skill"
CATEGORY_MISMATCH = "category_mismatch"
SCORE_OUT_OF_RANGE = "score_out_of_range"
UNIFORM = "uniform_scores"
EXAMPLES = 5


class AuditMetadata(TypedDict):
    checked: int
    offending_postings: int
    problems: dict[str, int]  # problem code -> offending postings
    examples: dict[str, list[int]]  # problem code -> a few posting ids
    notes: list[str]


@dataclass
class Audit:
    checked: int = 0
    offending: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def flag(self, code: str, posting_id: int) -> None:
        ids = self.offending.setdefault(code, [])
        if posting_id not in ids:
            ids.append(posting_id)

    @property
    def passed(self) -> bool:
        return not self.offending

    @property
    def offending_postings(self) -> int:
        return len({pid for ids in self.offending.values() for pid in ids})

    def metadata(self) -> AuditMetadata:
        """Counts per problem and a few example posting ids for each."""
        return {
            "checked": self.checked,
            "offending_postings": self.offending_postings,
            "problems": {code: len(ids) for code, ids in sorted(self.offending.items())},
            "examples": {code: sorted(ids)[:EXAMPLES] for code, ids in sorted(self.offending.items())},
            "notes": self.notes[:EXAMPLES],
        }


def audit_summaries(outputs: Mapping[int, str], *, min_chars: int = 150, max_chars: int = 5000) -> Audit:
    """Loops, unfilled template variables, filler, refusals, odd lengths, and one text for many postings."""
    audit = Audit(checked=len(outputs))
    for posting_id, text in outputs.items():
        for finding in detect_degenerate(text, min_chars=min_chars, max_chars=max_chars):
            audit.flag(finding.code, posting_id)
    for group in find_duplicate_outputs(outputs):
        for posting_id in group:
            audit.flag(DUPLICATE_OUTPUT, posting_id)
        audit.notes.append(f"postings {group[:EXAMPLES]} share one summary")
    return audit


def audit_skill_lists(outputs: Mapping[int, str]) -> Audit:
    """The `skill_keywords` column must be a JSON array of distinct, sane skill names."""
    audit = Audit(checked=len(outputs))
    for posting_id, text in outputs.items():
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            audit.flag(NOT_A_STRING_LIST, posting_id)
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            audit.flag(NOT_A_STRING_LIST, posting_id)
            continue
        if not value:
            audit.flag(EMPTY_LIST, posting_id)
            continue
        if len({v.casefold() for v in value}) != len(value):
            audit.flag(DUPLICATE_SKILL, posting_id)
        joined = " ".join(value)
        for finding in [*detect_repetition(joined), *detect_template_artifacts(joined)]:
            if finding.code in REPETITION_CODES | TEMPLATE_CODES:
                audit.flag(finding.code, posting_id)
        for name in value:
            for finding in [*detect_filler(name), *detect_refusal(name)]:
                audit.flag(finding.code, posting_id)
    return audit


def audit_ihl(scores: Mapping[int, tuple[int | None, str | None]], *, uniform_min_count: int = 20) -> Audit:
    """Scores within 0-10, the category the contract's rule gives, and not one score for everybody."""
    audit = Audit(checked=len(scores))
    for posting_id, (score, category) in scores.items():
        if score is None:
            continue
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            audit.flag(SCORE_OUT_OF_RANGE, posting_id)
            continue
        if category != str(category_for_score(score)):
            audit.flag(CATEGORY_MISMATCH, posting_id)
    plain = {pid: s for pid, (s, _c) in scores.items() if isinstance(s, int) and not isinstance(s, bool)}
    for finding in uniform_scores(plain, min_count=uniform_min_count):
        for posting_id in plain:
            audit.flag(UNIFORM, posting_id)
        audit.notes.append(finding.detail)
    return audit
