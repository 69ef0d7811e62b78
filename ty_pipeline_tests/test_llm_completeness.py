"""The completeness arithmetic of the LLM assets' checks, and the threshold setting."""

import pytest

from ty_pipeline.domain.llm_scope import DEFAULT_MIN_COMPLETE_SHARE, min_complete_share
from ty_pipeline.domain.llm_selection import Candidate
from ty_pipeline.enrichment.completeness import completeness

TEXT = "Wir suchen eine Kollegin oder einen Kollegen für die Buchhaltung in Frankfurt. " * 3


def cand(pid: int, status: str | None, description: str | None = TEXT) -> Candidate:
    return Candidate(
        posting_id=pid, source="deutsche_bank", external_id=f"R{pid}", title="t", employer=None, city=None,
        state=None, country=None, published_date=None, description=description, saved_status=status,
    )


def test_only_postings_with_a_description_count_and_every_other_state_is_named() -> None:
    result = completeness(
        [cand(1, "passed"), cand(2, "passed_after_improve"), cand(3, "ok"), cand(4, None), cand(5, "failed_grading"),
         cand(6, "llm_error"), cand(7, "skipped_no_description"), cand(8, None, description=None),
         cand(9, "skipped_no_description", description="kurz")],
        threshold=0.5,
    )
    assert (result.in_scope, result.done) == (7, 3)
    # A skip saved before the description arrived is pending work, not a result.
    assert result.by_status == {"failed_grading": 1, "llm_error": 1, "ok": 1, "passed": 1,
                                "passed_after_improve": 1, "pending": 2}
    assert result.pending_examples == ["deutsche_bank:R4 (posting_id 4)", "deutsche_bank:R7 (posting_id 7)"]
    assert result.failed_examples == ["deutsche_bank:R5 (posting_id 5)", "deutsche_bank:R6 (posting_id 6)"]
    assert result.share == pytest.approx(3 / 7) and not result.passed


def test_threshold_is_inclusive_and_an_empty_scope_is_complete() -> None:
    assert completeness([cand(1, "ok"), cand(2, None)], threshold=0.5).passed
    assert not completeness([cand(1, "ok"), cand(2, None)], threshold=0.51).passed
    empty = completeness([cand(1, None, description=None)], threshold=1.0)
    assert (empty.in_scope, empty.share, empty.passed) == (0, 1.0, True)


@pytest.mark.parametrize(("value", "share"), [(None, DEFAULT_MIN_COMPLETE_SHARE), ("", DEFAULT_MIN_COMPLETE_SHARE),
                                              ("0.8", 0.8), ("90%", 0.9), (" 1 ", 1.0), ("0", 0.0)])
def test_threshold_setting_parses_shares_and_percentages(value: str | None, share: float) -> None:
    assert min_complete_share(value, {}) == pytest.approx(share)
    assert min_complete_share(None, {"TY_LLM_MIN_COMPLETE": value or ""}) == pytest.approx(share)


@pytest.mark.parametrize("value", ["1.5", "-0.1", "abc", "120%"])
def test_a_bad_threshold_is_refused_with_the_variable_named(value: str) -> None:
    with pytest.raises(ValueError, match="TY_LLM_MIN_COMPLETE"):
        min_complete_share(value, {})
