"""Audits behind the LLM-output checks, on real summaries and synthetic degenerate ones."""

from __future__ import annotations

import json

from ty_pipeline.domain.output_audit import (
    CATEGORY_MISMATCH,
    DUPLICATE_OUTPUT,
    DUPLICATE_SKILL,
    EMPTY_LIST,
    NOT_A_STRING_LIST,
    SCORE_OUT_OF_RANGE,
    UNIFORM,
    audit_ihl,
    audit_skill_lists,
    audit_summaries,
)
from ty_pipeline.domain.summary_layout import SummaryFields, render_summary
from ty_pipeline_tests.paths import summary_grading_cases

GOOD = render_summary(SummaryFields(
    role="Senior Data Engineer", company="Deutsche Bank", location="Frankfurt am Main",
    responsibilities=["Build data pipelines for payments", "Run Spark and Kafka workloads", "Review code"],
    requirements=["Degree in computer science", "Five years of data engineering", "Fluent German and English"],
    details=["Full time", "Permanent contract"],
))


def test_real_pass_summaries_and_a_rendered_summary_pass() -> None:
    cases = summary_grading_cases()
    passing = {i: c["summary"].replace("===OUTPUT TEMPLATE===", "") for i, c in enumerate(cases)
               if c["expected_verdict"] == "PASS"}
    assert passing
    audit = audit_summaries({**passing, 99: GOOD})
    flagged = {code for code in audit.offending if code not in {"filler_phrase"}}  # "Job ID: Not Available"
    assert not flagged, audit.metadata()


def test_degenerate_and_duplicated_summaries_are_named() -> None:
    loop = GOOD + "\n" + "work " * 200
    template = GOOD.replace("Deutsche Bank", "{session_9_output}")
    refusal = "I cannot summarise this. Please provide the job posting text so that I can help you."
    audit = audit_summaries({1: GOOD, 2: loop, 3: template, 4: refusal, 5: GOOD})
    meta = audit.metadata()
    assert not audit.passed
    assert 2 in meta["examples"]["repeated_word"]
    assert 3 in meta["examples"]["unfilled_template_variable"]
    assert 4 in meta["examples"]["refusal"]
    assert meta["examples"][DUPLICATE_OUTPUT] == [1, 5]


def test_skill_lists() -> None:
    audit = audit_skill_lists({
        1: json.dumps(["Python", "SQL", "Kafka"]),
        2: "Python, SQL",
        3: json.dumps([]),
        4: json.dumps(["Python", "python"]),
        5: json.dumps({"skills": ["x"]}),
        6: json.dumps(["not specified in the text"]),
    })
    assert 1 not in {pid for ids in audit.offending.values() for pid in ids}
    assert audit.offending[NOT_A_STRING_LIST] == [2, 5]
    assert audit.offending[EMPTY_LIST] == [3]
    assert audit.offending[DUPLICATE_SKILL] == [4]
    assert 6 in audit.offending["filler_phrase"]


def test_ihl_scores_range_category_and_uniformity() -> None:
    audit = audit_ihl({1: (2, "GENUINE"), 2: (11, "FAKE"), 3: (8, "BORDERLINE"), 4: (None, None)})
    assert audit.offending == {SCORE_OUT_OF_RANGE: [2], CATEGORY_MISMATCH: [3]}
    same = {i: (5, "BORDERLINE") for i in range(25)}
    assert audit_ihl(same).offending[UNIFORM] == list(range(25))
    assert audit_ihl(dict(list(same.items())[:10])).passed  # a small partition may agree
