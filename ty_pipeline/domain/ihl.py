"""Internal Hire Likelihood (IHL): the three role schemas and the rule from score to category.

IHL is the chance that a posting is pre-wired for an internal or pre-selected candidate and published
only for compliance (docs/domain_rules.md §5). The replaced system never mapped scores to categories
consistently (0-10 vs 0-100, three vocabularies); here the score is 0-10 and the category is derived from
it by code, never taken from the model's verdict word.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ty_pipeline.domain.answer_text import AnswerText

IHL_MIN_SCORE = 0
IHL_MAX_SCORE = 10


class IHLCategory(StrEnum):
    GENUINE = "GENUINE"
    BORDERLINE = "BORDERLINE"
    COMPLIANCE_THEATER = "COMPLIANCE_THEATER"
    FAKE = "FAKE"


# Upper bound (inclusive) of each category, per the contract: 0-3, 4-6, 7-9, 10.
_CATEGORY_UPPER_BOUNDS = (
    (3, IHLCategory.GENUINE),
    (6, IHLCategory.BORDERLINE),
    (9, IHLCategory.COMPLIANCE_THEATER),
    (10, IHLCategory.FAKE),
)


def category_for_score(score: int) -> IHLCategory:
    """The contract's category for a 0-10 score; anything else is a bug upstream, so it raises."""
    if isinstance(score, bool) or not isinstance(score, int):
        raise TypeError(f"IHL score must be an int, got {type(score).__name__}: {score!r}")
    if not IHL_MIN_SCORE <= score <= IHL_MAX_SCORE:
        raise ValueError(f"IHL score {score} outside {IHL_MIN_SCORE}..{IHL_MAX_SCORE}")
    return next(category for upper, category in _CATEGORY_UPPER_BOUNDS if score <= upper)


# ---------------------------------------------------------------------------------------------------------
# LLM answer schemas (sent as Ollama's `format`; Literal and ge/le constrain what the model can emit)


def _reject_bool(value: object) -> object:
    # pydantic would turn JSON `true` into 1: a boolean is never a meaningful score.
    if isinstance(value, bool):
        raise ValueError("a score must be an integer, not a boolean")
    return value


# Bounds go in the field's own Field(ge=, le=) so the JSON schema gets minimum/maximum.
ScoreInt = Annotated[int, BeforeValidator(_reject_bool)]


Severity = Literal["LOW", "MEDIUM", "HIGH"]
Confidence = Literal["LOW", "MEDIUM", "HIGH"]
CandidatePool = Literal["LARGE (1000+)", "MEDIUM (100-1000)", "SMALL (10-100)", "TINY (<10)"]
Recommendation = Literal["APPLY", "CAUTION", "SKIP"]


# `validate_role_output` rejects an empty reasoning, flag or evidence; the schema says so, so a grammar-constrained
# server cannot emit one. Schema only: pydantic itself stays lenient and the validator words the retry.
_NON_EMPTY: dict[str, Any] = {"minLength": 1}


class _Schema(BaseModel):
    # additionalProperties: false in the schema keeps the model to the listed keys.
    model_config = ConfigDict(extra="forbid")


class RedFlag(_Schema):
    flag: AnswerText = Field(description="Description of the red flag.", json_schema_extra=_NON_EMPTY)
    evidence: AnswerText = Field(description="Exact quote from the posting that shows it.", json_schema_extra=_NON_EMPTY)
    severity: Severity = Field(description="How strongly this suggests a pre-selected candidate.")


class AnalystOutput(_Schema):
    """Role 1: looks for real red flags (exact year counts on niche stacks, internal systems, résumé-like
    specificity, impossibly narrow pool, contradictions); ordinary stacks, titles and tools are not flags."""

    analyst_verdict: Literal["GENUINE", "SUSPICIOUS", "PRE_WIRED"]
    suggested_ihl_score: ScoreInt = Field(ge=1, le=10, description="1 = totally genuine, 10 = totally fake.")
    red_flags: list[RedFlag] = Field(description="Real red flags only; an empty list if there are none.")
    reasoning: AnswerText = Field(description="1-2 sentences explaining the verdict.", json_schema_extra=_NON_EMPTY)


class CounterArgument(_Schema):
    analyst_flag: AnswerText = Field(description="Which red flag of the analyst is being challenged.")
    counter_evidence: AnswerText = Field(description="Why this might be legitimate.")
    severity_downgrade: AnswerText = Field(description="Why this is not as suspicious as claimed.")


class SkepticOutput(_Schema):
    """Role 2 (devil's advocate): argues the job is genuine against the analyst's flags."""

    skeptic_verdict: Literal["GENUINE", "PLAUSIBLE", "WEAK_CASE"]
    suggested_ihl_score: ScoreInt = Field(
        ge=1, le=5, description="1 = totally genuine, 5 = the analyst may have a point."
    )
    counter_arguments: list[CounterArgument]
    reasoning: AnswerText = Field(
        description="1-2 sentences explaining why this job might be genuine.", json_schema_extra=_NON_EMPTY
    )


class HRExpertOutput(_Schema):
    """Role 3: weighs analyst and skeptic, fair both ways; its score is the one that is stored."""

    ihl_score: ScoreInt = Field(
        ge=IHL_MIN_SCORE,
        le=IHL_MAX_SCORE,
        description="0-3 genuine opening, 4-6 borderline, 7-9 compliance theater (pre-wired candidate), "
        "10 fake (describes one specific person's CV)."
    )
    verdict: Literal["GENUINE", "BORDERLINE", "COMPLIANCE_THEATER", "FAKE"]
    confidence: Confidence
    red_flags: list[RedFlag]
    candidate_pool_estimate: CandidatePool
    recommendation: Recommendation
    reasoning: AnswerText = Field(
        description="2-3 sentences explaining the final decision, considering both sides.", json_schema_extra=_NON_EMPTY
    )


# ---------------------------------------------------------------------------------------------------------
# The stored result


@dataclass(frozen=True)
class IHLResult:
    score: int
    category: IHLCategory
    model_verdict: str
    # True when the expert's verdict word disagrees with the category its own score implies: the score
    # wins, the flag lets dashboards and checks count how often the model contradicts itself.
    verdict_disagrees: bool
    confidence: str
    recommendation: str
    candidate_pool_estimate: str


def ihl_result(expert: HRExpertOutput) -> IHLResult:
    category = category_for_score(expert.ihl_score)
    return IHLResult(
        score=expert.ihl_score,
        category=category,
        model_verdict=expert.verdict,
        verdict_disagrees=expert.verdict != category.value,
        confidence=expert.confidence,
        recommendation=expert.recommendation,
        candidate_pool_estimate=expert.candidate_pool_estimate,
    )
