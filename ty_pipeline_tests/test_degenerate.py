"""Degenerate-output detectors on the replaced system's real outputs and postings, and on synthetic loops."""

from __future__ import annotations

import json
import math

import pytest

from ty_pipeline.domain.degenerate import (
    FILLER_PHRASE,
    INVALID_JSON,
    INVALID_SCORE,
    REFUSAL,
    REPEATED_PHRASE,
    REPEATED_WORD,
    REPETITION_CODES,
    SCORE_OUT_OF_RANGE,
    TEMPLATE_MARKER,
    TOO_LONG,
    TOO_SHORT,
    UNEXPECTED_JSON_TYPE,
    UNFILLED_TEMPLATE_VARIABLE,
    UNIFORM_SCORES,
    Finding,
    detect_degenerate,
    detect_filler,
    detect_invalid_json,
    detect_length,
    detect_refusal,
    detect_repetition,
    detect_scores_out_of_range,
    detect_template_artifacts,
    find_duplicate_outputs,
    is_filler_value,
    uniform_scores,
)
from ty_pipeline_tests.paths import FIXTURES_DIR, summary_grading_cases

FIXTURES = FIXTURES_DIR
GRADING_CASES = summary_grading_cases()
CASES_BY_ID = {case["id"]: case for case in GRADING_CASES}
PASS_IDS = [case["id"] for case in GRADING_CASES if case["expected_verdict"] == "PASS"]

# Codes that real, good text must never produce (filler and length are legitimately content-dependent).
HARD_CODES = REPETITION_CODES | {UNFILLED_TEMPLATE_VARIABLE, REFUSAL}


def _real_posting_texts() -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in sorted((FIXTURES / "deutsche_bank_postings").glob("*.json")):
        content = json.loads(path.read_text(encoding="utf-8"))["job_content"]
        texts[f"{path.stem}:description"] = content["description"]
        texts[f"{path.stem}:title"] = content["title"]
    for case in GRADING_CASES:
        texts[f"{case['id']}:original"] = case["original_posting"]["job_description"]
    return texts


REAL_POSTINGS = _real_posting_texts()


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def test_fixtures_are_present_so_the_real_data_tests_are_not_vacuous() -> None:
    assert len(PASS_IDS) == 5
    assert sum(key.endswith(":description") for key in REAL_POSTINGS) >= 21


# --------------------------------------------------------------------------------------------- real data


def test_model_asking_for_the_posting_is_a_refusal() -> None:
    findings = detect_degenerate(CASES_BY_ID["GRADE_FAIL_003"]["summary"])
    assert REFUSAL in codes(findings)
    assert "Please provide the job posting" in next(f.detail for f in findings if f.code == REFUSAL)


@pytest.mark.parametrize("case_id", ["GRADE_FAIL_001", "GRADE_FAIL_002"])
def test_echoed_output_template_marker_is_flagged(case_id: str) -> None:
    findings = detect_template_artifacts(CASES_BY_ID[case_id]["summary"])
    assert [f.code for f in findings] == [TEMPLATE_MARKER]
    assert "===OUTPUT TEMPLATE===" in findings[0].detail


@pytest.mark.parametrize("case_id", PASS_IDS)
def test_good_legacy_summaries_have_no_loops_variables_or_refusals(case_id: str) -> None:
    findings = detect_degenerate(CASES_BY_ID[case_id]["summary"], min_chars=None, max_chars=None)
    assert not codes(findings) & HARD_CODES, findings


def test_legacy_pass_summary_with_the_marker_is_flagged_too() -> None:
    # Accepted: the legacy layout required `===OUTPUT TEMPLATE===` (GRADE_FAIL_004 failed for lacking it);
    # in ours it is prompt scaffolding, so a legacy PASS that carries it is flagged as well.
    assert TEMPLATE_MARKER in codes(detect_template_artifacts(CASES_BY_ID["GRADE_PASS_001"]["summary"]))


@pytest.mark.parametrize("case_id", PASS_IDS)
def test_job_id_not_available_in_legacy_summaries_is_filler(case_id: str) -> None:
    findings = detect_filler(CASES_BY_ID[case_id]["summary"])
    assert codes(findings) == {FILLER_PHRASE}
    assert "Job ID: Not" in findings[0].detail


@pytest.mark.parametrize("name", sorted(REAL_POSTINGS))
def test_real_postings_produce_no_findings_at_all(name: str) -> None:
    assert detect_degenerate(REAL_POSTINGS[name], min_chars=None, max_chars=None) == []


# --------------------------------------------------------------------------------------------- repetition

VARIED_WORDS = ["hard", "fast", "now", "again", "today", "later", "well", "more", "often", "daily"]
SUMMARY_HEAD = "**Role:** Data Analyst\n**Company:** Deutsche Bank\n**Key Responsibilities:**\n- Build risk reports.\n"


@pytest.mark.parametrize(
    ("text", "expected_code", "expected_fragment"),
    [
        (SUMMARY_HEAD + "work " * 300, REPEATED_WORD, "'work' repeated 300 times"),
        ("Sie arbeiten im Team. " + "Arbeit " * 120, REPEATED_WORD, "'arbeit' repeated 120 times"),
        (SUMMARY_HEAD + "and the team will " * 20, REPEATED_PHRASE, "'and the team will' repeated 20 times"),
        (
            SUMMARY_HEAD + "- Pflege der Datenqualität der Kreditrisikomodelle in der Gruppe.\n" * 8,
            REPEATED_PHRASE,
            "repeated 8 times",
        ),
        (
            " ".join(f"Schritt {i}: die Daten sorgfältig analysieren und prüfen." for i in range(30)),
            REPEATED_PHRASE,
            "looping text",
        ),
        (
            " ".join(f"work {w}" for w in VARIED_WORDS * 3),
            REPEATED_WORD,
            "'work' makes up 50%",
        ),
    ],
    ids=["english-word", "german-word", "phrase", "bullet-line", "dispersed-phrase", "dominant-word"],
)
def test_loops_are_detected(text: str, expected_code: str, expected_fragment: str) -> None:
    findings = detect_repetition(text)
    assert [f.code for f in findings] == [expected_code]
    assert expected_fragment in findings[0].detail


def test_word_loop_threshold_is_five_in_a_row() -> None:
    assert detect_repetition("Wir freuen uns sehr sehr sehr sehr auf Sie.") == []
    assert codes(detect_repetition("Wir freuen uns sehr sehr sehr sehr sehr auf Sie.")) == {REPEATED_WORD}


def test_phrase_loop_threshold_is_four_in_a_row() -> None:
    three = "Intro. " + "we are hiring now. " * 3 + "Apply today."
    four = "Intro. " + "we are hiring now. " * 4 + "Apply today."
    assert detect_repetition(three) == []
    assert codes(detect_repetition(four)) == {REPEATED_PHRASE}


def test_a_sentence_repeated_twice_and_digit_runs_are_not_loops() -> None:
    sentence = "Create and configure test machines with registry keys to enable AD RMS functionality. "
    assert detect_repetition(sentence * 2 + "Call 0 0 0 0 0 0 0 1 for details.") == []


# --------------------------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    "text",
    [
        "**Role:** {session_9_output}\n**Company:** Deutsche Bank",
        "Summary of {{ job_description }} follows.",
        "Role: {{variable}}",
        "Location: ${location}",
        "Company: [Insert company name]",
    ],
)
def test_unfilled_template_variables(text: str) -> None:
    assert codes(detect_template_artifacts(text)) == {UNFILLED_TEMPLATE_VARIABLE}


def test_template_variable_detail_names_the_variable() -> None:
    findings = detect_template_artifacts("Improved summary: {session_9_output} and {session_10_output}")
    assert findings[0].detail.endswith("{session_9_output}, {session_10_output}")


@pytest.mark.parametrize(
    "text",
    [
        "Assistant Vice President – {SR9207358}",  # a real Deutsche Bank requisition id in braces
        'Send JSON such as {"salary": 5} to the API.',
        "Sie (m/w/d) arbeiten mit [SAP] und {Python}.",
    ],
)
def test_braces_that_are_not_template_variables(text: str) -> None:
    assert detect_template_artifacts(text) == []


# --------------------------------------------------------------------------------------------- filler


@pytest.mark.parametrize(
    "text",
    [
        "The salary is not specified in the text.",
        "Working hours are not mentioned in the text.",
        "Location information not available.",
        "The seniority cannot be determined from the posting.",
        "Das Gehalt ist nicht angegeben.",
        "Gehalt: keine Angabe",
        "Die Arbeitszeit wird im Text nicht erwähnt.",
        "**Location:** N/A",
        "**Job ID:** k. A.",
    ],
)
def test_filler_phrases_english_and_german(text: str) -> None:
    assert codes(detect_filler(text)) == {FILLER_PHRASE}


def test_filler_words_inside_real_sentences_are_not_filler() -> None:
    text = "None of our teams is unknown to you; details are available on request. Status: open."
    assert detect_filler(text) == []


@pytest.mark.parametrize("value", ["Not available", "n/a", "N.A.", " unknown ", "keine Angabe", "—", "**Not Provided**"])
def test_filler_values(value: str) -> None:
    assert is_filler_value(value)


@pytest.mark.parametrize("value", ["R0391904", "Frankfurt", "NA", "Not only Python", "Nicht-Raucher-Büro"])
def test_real_values_are_not_filler(value: str) -> None:
    assert not is_filler_value(value)


# --------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "text",
    [
        "Please provide the job posting text. I need the text to create the job description summary.",
        "I cannot summarize this posting because no text was given.",
        "I'm sorry, but I need the job description to continue.",
        "As an AI language model, I do not have access to the posting.",
        "You have not provided any posting.",
        "Bitte geben Sie den vollständigen Text der Stellenanzeige an.",
        "Bitte stellen Sie mir die Stellenbeschreibung zur Verfügung.",
        "Als KI-Sprachmodell kann ich das nicht beurteilen.",
        "Es tut mir leid, ich habe keine Stellenanzeige erhalten.",
        "Ich kann ohne den Text keine Zusammenfassung erstellen.",
    ],
)
def test_refusals_english_and_german(text: str) -> None:
    assert codes(detect_refusal(text)) == {REFUSAL}


@pytest.mark.parametrize(
    "text",
    [
        "As an AI Engineer you will build models; as an AI specialist you lead the team.",
        "Bitte geben Sie Ihre Gehaltsvorstellung und den frühestmöglichen Eintrittstermin an.",
        "Bitte nennen Sie uns die Kennziffer der Anzeige in Ihrer Bewerbung.",
        "Please include a description of your project portfolio and your CV.",
        'Our colleague says: "I cannot imagine a better team."',
        "If you have not provided your certificates yet, please send them later.",
    ],
)
def test_ordinary_posting_sentences_are_not_refusals(text: str) -> None:
    assert detect_refusal(text) == []


# --------------------------------------------------------------------------------------------- length, all


def test_length_bounds_and_disabling() -> None:
    assert codes(detect_length("x" * 49, min_chars=50, max_chars=5000)) == {TOO_SHORT}
    assert detect_length("x" * 50, min_chars=50, max_chars=5000) == []
    assert detect_length("x" * 5000, min_chars=50, max_chars=5000) == []
    assert codes(detect_length("x" * 5001, min_chars=50, max_chars=5000)) == {TOO_LONG}
    assert detect_length("x", min_chars=None, max_chars=None) == []
    assert codes(detect_length("   short   ", min_chars=6, max_chars=None)) == {TOO_SHORT}


def test_detect_degenerate_collects_every_kind_in_a_fixed_order() -> None:
    text = "I cannot summarize {session_9_output}: salary not specified in the text. " + "work " * 50
    findings = detect_degenerate(text, min_chars=50, max_chars=200)
    assert [f.code for f in findings] == [TOO_LONG, REPEATED_WORD, UNFILLED_TEMPLATE_VARIABLE, FILLER_PHRASE, REFUSAL]


def test_detect_degenerate_default_bounds_follow_the_legacy_qa_limits() -> None:
    assert codes(detect_degenerate("Kurz.")) == {TOO_SHORT}
    long_real_posting = REAL_POSTINGS["job50571:description"]
    assert len(long_real_posting) > 5000
    assert codes(detect_degenerate(long_real_posting)) == {TOO_LONG}


# --------------------------------------------------------------------------------------------- across postings


def test_duplicate_outputs_are_grouped_after_normalisation() -> None:
    outputs = {
        7: "**Role:** Data Entry Clerk\n- Enter data.",
        3: "**role:**   data entry clerk - enter data",
        5: "A different summary.",
        9: "**Role:** Data Entry Clerk - Enter data!",
        2: "a different SUMMARY",
        4: "unique",
        1: "   ",
        8: "",
    }
    assert find_duplicate_outputs(outputs) == [[2, 5], [3, 7, 9]]


def test_no_duplicates_gives_an_empty_list() -> None:
    assert find_duplicate_outputs({1: "alpha", 2: "beta"}) == []


# --------------------------------------------------------------------------------------------- JSON, scores


def test_invalid_json_and_wrong_top_level_type() -> None:
    assert codes(detect_invalid_json('{"ihl_score": 5,}')) == {INVALID_JSON}
    assert codes(detect_invalid_json("Here is the JSON: {}")) == {INVALID_JSON}
    assert codes(detect_invalid_json('["a"]', expect="object")) == {UNEXPECTED_JSON_TYPE}
    assert codes(detect_invalid_json('{"a": 1}', expect="array")) == {UNEXPECTED_JSON_TYPE}
    assert detect_invalid_json('{"a": 1}', expect="object") == []
    assert detect_invalid_json('["a"]', expect="array") == []


def test_scores_out_of_range_and_not_numbers() -> None:
    findings = detect_scores_out_of_range(
        {1: 0, 2: 10, 3: 11, 4: -1, 5: True, 6: math.nan, 7: "7", 8: 5.5}, low=0, high=10
    )
    assert [(f.code, f.detail.split(":")[0]) for f in findings] == [
        (SCORE_OUT_OF_RANGE, "posting 3"),
        (SCORE_OUT_OF_RANGE, "posting 4"),
        (INVALID_SCORE, "posting 5"),
        (INVALID_SCORE, "posting 6"),
        (INVALID_SCORE, "posting 7"),
    ]


def test_uniform_scores_only_for_large_partitions() -> None:
    assert codes(uniform_scores([5] * 20, min_count=20)) == {UNIFORM_SCORES}
    assert uniform_scores([5] * 19, min_count=20) == []
    assert uniform_scores([5] * 30 + [6], min_count=20) == []
    by_posting = {i: 3 for i in range(25)} | {99: None}
    findings = uniform_scores(by_posting, min_count=20)
    assert codes(findings) == {UNIFORM_SCORES}
    assert "all 25 postings got the same score 3" in findings[0].detail
