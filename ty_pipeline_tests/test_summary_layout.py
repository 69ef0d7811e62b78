"""Summary fields, their deterministic layout, and the validation message for the corrective retry."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from ty_pipeline.domain.degenerate import detect_degenerate
from ty_pipeline.domain.summary_layout import (
    SUMMARY_HEADERS,
    SummaryFields,
    render_summary,
    validate_summary_fields,
)
from ty_pipeline_tests.paths import FIXTURES_DIR, summary_grading_cases

FIXTURES = FIXTURES_DIR
GRADING_CASES = summary_grading_cases()


def make_fields(**overrides: object) -> SummaryFields:
    data: dict[str, object] = {
        "role": "Tax Senior Specialist (d/m/w)",
        "company": "Deutsche Bank",
        "location": "Frankfurt am Main, Germany",
        "job_id": "R0357245",
        "responsibilities": [
            "Prepare German corporate tax returns for group entities.",
            "Advise business divisions on tax questions.",
            "Support tax audits.",
        ],
        "requirements": [
            "Degree in business administration or law with a tax focus.",
            "Several years of experience in corporate tax.",
            "Fluent German and English.",
        ],
        "details": ["Full-time, permanent.", "Hybrid working possible."],
    }
    data.update(overrides)
    return SummaryFields.model_validate(data)


# --------------------------------------------------------------------------------------------- layout


def test_render_produces_the_standard_layout_exactly() -> None:
    assert render_summary(make_fields()) == (
        "**Role:** Tax Senior Specialist (d/m/w)\n"
        "**Company:** Deutsche Bank\n"
        "**Location:** Frankfurt am Main, Germany\n"
        "**Job ID:** R0357245\n"
        "**Key Responsibilities:**\n"
        "- Prepare German corporate tax returns for group entities.\n"
        "- Advise business divisions on tax questions.\n"
        "- Support tax audits.\n"
        "**Requirements:**\n"
        "- Degree in business administration or law with a tax focus.\n"
        "- Several years of experience in corporate tax.\n"
        "- Fluent German and English.\n"
        "**Details:**\n"
        "- Full-time, permanent.\n"
        "- Hybrid working possible."
    )


@pytest.mark.parametrize("missing", [None, "", "Not available", "N/A", "nicht angegeben", "**Not Provided**"])
def test_missing_job_id_is_an_omitted_line_not_filler(missing: str | None) -> None:
    fields = make_fields(job_id=missing)
    assert fields.job_id is None
    rendered = render_summary(fields)
    assert "Job ID" not in rendered
    assert rendered.splitlines()[3] == "**Key Responsibilities:**"


def test_empty_details_leave_out_the_details_header() -> None:
    rendered = render_summary(make_fields(details=[]))
    assert "**Details:**" not in rendered
    assert rendered.endswith("- Fluent German and English.")


def test_filler_details_are_dropped() -> None:
    fields = make_fields(details=["Salary: not specified", "Not available", "- Remote work: N/A", "Full-time."])
    assert fields.details == ["Full-time."]
    assert render_summary(fields).endswith("**Details:**\n- Full-time.")


def test_values_are_cleaned_of_entities_tags_markdown_and_line_breaks() -> None:
    fields = make_fields(
        role="IBC &amp; A Germany Analyst",
        company="**Deutsche\u00a0Bank**",
        location=" Frankfurt,\n  Germany ",
        responsibilities=["- Build <b>models</b>", "• Write ```code```", "1. Present results &ndash; monthly"],
    )
    rendered = render_summary(fields)
    assert rendered.splitlines()[:3] == [
        "**Role:** IBC & A Germany Analyst",
        "**Company:** Deutsche Bank",
        "**Location:** Frankfurt, Germany",
    ]
    assert "- Build models\n- Write code\n- Present results – monthly\n" in rendered


def test_rendering_has_headers_in_order_and_no_noise() -> None:
    rendered = render_summary(make_fields())
    lines = rendered.splitlines()
    headers = [line.split("**")[1] for line in lines if line.startswith("**")]
    assert headers == [h.strip("*") for h in SUMMARY_HEADERS]
    assert all(line.strip() for line in lines)  # no blank lines
    assert "```" not in rendered and "&amp;" not in rendered
    assert all(line.startswith(("**", "- ")) for line in lines)


# --------------------------------------------------------------------------------------------- schema


def test_json_schema_constrains_the_model() -> None:
    schema = SummaryFields.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"role", "company", "location", "responsibilities", "requirements"}
    for name in ("responsibilities", "requirements"):
        assert (schema["properties"][name]["minItems"], schema["properties"][name]["maxItems"]) == (3, 5)
    assert all(len(prop["description"]) > 20 for prop in schema["properties"].values())


@pytest.mark.parametrize(
    "overrides",
    [
        {"responsibilities": ["One.", "Two."]},
        {"requirements": ["a1", "a2", "a3", "a4", "a5", "a6"]},
        {"role": "   "},
        {"responsibilities": ["Do things.", "-", "Other things."]},
        {"salary": "100k"},
    ],
    ids=["too-few-bullets", "too-many-bullets", "blank-role", "empty-bullet", "unknown-key"],
)
def test_invalid_structures_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_fields(**overrides)


# --------------------------------------------------------------------------------------------- validation


def test_clean_fields_validate() -> None:
    assert validate_summary_fields(make_fields()) is None


@pytest.mark.parametrize(
    ("overrides", "expected_line"),
    [
        ({"company": "Not specified in the text"}, "- company: filler instead of content"),
        ({"role": "{session_9_output}"}, "- role: unfilled template variable(s): {session_9_output}"),
        ({"location": "Please provide the job posting text."}, "- location: the model refused"),
        ({"job_id": "===OUTPUT TEMPLATE==="}, "- job_id: prompt template marker(s)"),
        (
            {"requirements": ["Python.", "SQL.", "work " * 40]},
            "- requirements item 3: 'work' repeated 40 times in a row",
        ),
        ({"details": ["Gehalt wird im Text nicht erwähnt."]}, "- details item 1: filler instead of content"),
        (
            {"responsibilities": ["Support audits.", "Support audits!", "Advise."]},
            "- responsibilities item 2: repeats item 1",
        ),
    ],
    ids=["filler", "template-variable", "refusal", "marker", "loop", "german-filler-in-details", "duplicate"],
)
def test_problems_are_named_per_field(overrides: dict[str, object], expected_line: str) -> None:
    message = validate_summary_fields(make_fields(**overrides))
    assert message is not None
    assert expected_line in message
    assert "same schema" in message


def test_loop_spread_over_bullets_is_caught_on_the_whole_summary() -> None:
    # Each bullet alone is fine; together they are one sentence looping with a varying last word.
    stem = "Review the quarterly credit risk reports with the team"
    fields = make_fields(
        responsibilities=[f"{stem} monthly", f"{stem} weekly", f"{stem} daily"],
        requirements=[f"{stem} yearly", f"{stem} often", "Python"],
    )
    message = validate_summary_fields(fields)
    assert message is not None
    assert "- whole summary: looping text" in message
    assert "responsibilities item" not in message


# --------------------------------------------------------------------------------------------- real summaries


def _legacy_fields(summary: str) -> dict[str, object]:
    """Fields of a legacy layout text, as the extractor would now return them (first five bullets)."""
    values: dict[str, str] = {}
    sections: dict[str, list[str]] = {"responsibilities": [], "requirements": [], "details": []}
    current: list[str] | None = None
    for line in summary.splitlines():
        header = re.match(r"\*\*(.+?):\*\*\s*(.*)", line.strip())
        if header:
            name, value = header.groups()
            key = {"Key Responsibilities": "responsibilities", "Requirements": "requirements", "Details": "details"}
            current = sections.get(key.get(name, ""))
            values[name] = value
        elif line.startswith("- ") and current is not None:
            current.append(line)
    return {
        "role": values["Role"],
        "company": values["Company"],
        "location": values["Location"],
        "job_id": values["Job ID"],
        **{name: items[:5] for name, items in sections.items()},
    }


@pytest.mark.parametrize("case", [c for c in GRADING_CASES if c["expected_verdict"] == "PASS"], ids=lambda c: c["id"])
def test_legacy_pass_summaries_come_out_clean_through_the_layout(case: dict[str, object]) -> None:
    fields = SummaryFields.model_validate(_legacy_fields(str(case["summary"])))
    rendered = render_summary(fields)
    assert validate_summary_fields(fields) is None
    # The legacy texts carried code fences, `===OUTPUT TEMPLATE===` and "Job ID: Not available": all gone.
    assert detect_degenerate(rendered) == []
    assert rendered.startswith("**Role:** ") and "Job ID" not in rendered
