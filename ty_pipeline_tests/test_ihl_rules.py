"""IHL: score-to-category rule of the contract, the three role schemas, and the stored result."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from ty_pipeline.domain.ihl import (
    AnalystOutput,
    HRExpertOutput,
    IHLCategory,
    SkepticOutput,
    category_for_score,
    ihl_result,
)

# --------------------------------------------------------------------------------------------- categories

EXPECTED_CATEGORY = {
    0: "GENUINE", 1: "GENUINE", 2: "GENUINE", 3: "GENUINE",
    4: "BORDERLINE", 5: "BORDERLINE", 6: "BORDERLINE",
    7: "COMPLIANCE_THEATER", 8: "COMPLIANCE_THEATER", 9: "COMPLIANCE_THEATER",
    10: "FAKE",
}


@pytest.mark.parametrize(("score", "category"), sorted(EXPECTED_CATEGORY.items()))
def test_category_for_every_score_follows_the_contract(score: int, category: str) -> None:
    assert category_for_score(score) == category


def test_category_is_a_plain_string_for_the_warehouse() -> None:
    assert isinstance(category_for_score(7), str)
    assert json.dumps(category_for_score(7)) == '"COMPLIANCE_THEATER"'


@pytest.mark.parametrize("score", [-1, 11, 100, 60])
def test_scores_outside_0_to_10_raise(score: int) -> None:
    # 60 stands for the legacy percentage scale (0-100) that once leaked in as "6/100, BORDERLINE".
    with pytest.raises(ValueError, match="outside 0..10"):
        category_for_score(score)


@pytest.mark.parametrize("score", [True, 5.0, "5", None])
def test_non_integer_scores_raise(score: object) -> None:
    with pytest.raises(TypeError):
        category_for_score(score)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- schemas

ANALYST = {
    "analyst_verdict": "SUSPICIOUS",
    "suggested_ihl_score": 6,
    "red_flags": [
        {
            "flag": "Oddly exact years on a niche stack",
            "evidence": "exactly 7 years of Murex MxML",
            "severity": "HIGH",
        }
    ],
    "reasoning": "One strong flag.",
}
SKEPTIC = {
    "skeptic_verdict": "PLAUSIBLE",
    "suggested_ihl_score": 3,
    "counter_arguments": [
        {
            "analyst_flag": "Oddly exact years on a niche stack",
            "counter_evidence": "Murex roles commonly ask for long experience.",
            "severity_downgrade": "Industry norm for trading platforms.",
        }
    ],
    "reasoning": "A clear opening with a process.",
}
EXPERT = {
    "ihl_score": 5,
    "verdict": "BORDERLINE",
    "confidence": "MEDIUM",
    "red_flags": [],
    "candidate_pool_estimate": "SMALL (10-100)",
    "recommendation": "CAUTION",
    "reasoning": "Both sides have a point.",
}


def test_valid_answers_of_the_three_roles_parse_from_json() -> None:
    assert AnalystOutput.model_validate_json(json.dumps(ANALYST)).red_flags[0].severity == "HIGH"
    assert SkepticOutput.model_validate_json(json.dumps(SKEPTIC)).counter_arguments[0].analyst_flag.startswith("Odd")
    assert HRExpertOutput.model_validate_json(json.dumps(EXPERT)).ihl_score == 5


@pytest.mark.parametrize(
    ("model", "base", "change"),
    [
        (AnalystOutput, ANALYST, {"suggested_ihl_score": 0}),
        (AnalystOutput, ANALYST, {"suggested_ihl_score": 11}),
        (AnalystOutput, ANALYST, {"analyst_verdict": "FAKE"}),
        (AnalystOutput, ANALYST, {"red_flags": [{"flag": "x", "evidence": "y", "severity": "CRITICAL"}]}),
        (SkepticOutput, SKEPTIC, {"suggested_ihl_score": 6}),
        (SkepticOutput, SKEPTIC, {"skeptic_verdict": "SUSPICIOUS"}),
        (HRExpertOutput, EXPERT, {"ihl_score": 11}),
        (HRExpertOutput, EXPERT, {"ihl_score": -1}),
        (HRExpertOutput, EXPERT, {"ihl_score": 60}),
        (HRExpertOutput, EXPERT, {"ihl_score": True}),
        (HRExpertOutput, EXPERT, {"ihl_score": 5.5}),
        (HRExpertOutput, EXPERT, {"verdict": "SUSPICIOUS"}),
        (HRExpertOutput, EXPERT, {"candidate_pool_estimate": "LARGE"}),
        (HRExpertOutput, EXPERT, {"recommendation": "MAYBE"}),
        (HRExpertOutput, EXPERT, {"confidence": "VERY HIGH"}),
        (HRExpertOutput, EXPERT, {"success": "[SUCCESS]"}),
    ],
)
def test_out_of_schema_answers_are_rejected(model: type, base: dict[str, object], change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps({**base, **change}))


def test_missing_expert_score_is_rejected() -> None:
    without_score = {k: v for k, v in EXPERT.items() if k != "ihl_score"}
    with pytest.raises(ValidationError):
        HRExpertOutput.model_validate(without_score)


def test_json_schemas_carry_the_bounds_and_vocabularies() -> None:
    expert = HRExpertOutput.model_json_schema()
    props = expert["properties"]
    assert (props["ihl_score"]["minimum"], props["ihl_score"]["maximum"]) == (0, 10)
    assert props["verdict"]["enum"] == ["GENUINE", "BORDERLINE", "COMPLIANCE_THEATER", "FAKE"]
    assert props["candidate_pool_estimate"]["enum"] == [
        "LARGE (1000+)", "MEDIUM (100-1000)", "SMALL (10-100)", "TINY (<10)",
    ]
    assert props["recommendation"]["enum"] == ["APPLY", "CAUTION", "SKIP"]
    assert expert["additionalProperties"] is False
    analyst = AnalystOutput.model_json_schema()["properties"]["suggested_ihl_score"]
    skeptic = SkepticOutput.model_json_schema()["properties"]["suggested_ihl_score"]
    assert (analyst["minimum"], analyst["maximum"], skeptic["minimum"], skeptic["maximum"]) == (1, 10, 1, 5)


# --------------------------------------------------------------------------------------------- stored result


def test_result_takes_the_category_from_the_score_not_the_verdict_word() -> None:
    expert = HRExpertOutput.model_validate({**EXPERT, "ihl_score": 8, "verdict": "GENUINE"})
    result = ihl_result(expert)
    assert (result.score, result.category) == (8, IHLCategory.COMPLIANCE_THEATER)
    assert result.model_verdict == "GENUINE"
    assert result.verdict_disagrees is True


@pytest.mark.parametrize(("score", "verdict"), [(0, "GENUINE"), (6, "BORDERLINE"), (7, "COMPLIANCE_THEATER"), (10, "FAKE")])
def test_result_agrees_when_verdict_matches_the_score_band(score: int, verdict: str) -> None:
    result = ihl_result(HRExpertOutput.model_validate({**EXPERT, "ihl_score": score, "verdict": verdict}))
    assert result.category == verdict
    assert result.verdict_disagrees is False
    assert (result.confidence, result.recommendation, result.candidate_pool_estimate) == (
        "MEDIUM", "CAUTION", "SMALL (10-100)",
    )
