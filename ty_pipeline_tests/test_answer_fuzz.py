"""Property-based fuzzing of what turns an LLM answer or a BERUFENET record into stored text.

The same nasty text as the wire parsers' fuzzing (`test_parser_fuzz.py`: controls, lone surrogates,
entities, markup) goes into every text field of the LLM answer schemas, through the one parse step
every backend uses (`judge_answer`), and into BERUFENET detail records. Properties: an accepted value
keeps no control character or surrogate and is never empty where the contract needs text; an answer
left with nothing usable is rejected (asked again, then a recorded failure), never accepted empty; and
clean text (line breaks, tabs, markdown included) passes through unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from ty_pipeline.clients.berufenet import profession_from_detail
from ty_pipeline.clients.llm_base import judge_answer
from ty_pipeline.domain.ihl import AnalystOutput, HRExpertOutput
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.skills import SkillList
from ty_pipeline.domain.summary_layout import SummaryFields, render_summary, validate_summary_fields
from ty_pipeline.enrichment.ihl import validate_role_output
from ty_pipeline.enrichment.skills import ranked_skills, validate_skill_list
from ty_pipeline.enrichment.summaries import Grade, validate_grade
from ty_pipeline_tests.test_parser_fuzz import FORBIDDEN, FUZZ, assert_storable, nasty_text

# Text with nothing to clean: no control character but tab and newline, no surrogate, no `&`, no CR.
plain_text = st.lists(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="&"), max_size=8)
    | st.sampled_from(["\n", "\t", "**", "- ", "`", "#", "\n\n- item", "R&D ", "AT&T "]),
    max_size=8,
).map("".join)


def as_answer(data: Any) -> str:
    """The answer content as a server delivers it: JSON, surrogates and controls as `\\u` escapes."""
    return json.dumps(data)


class Note(BaseModel):
    """Any schema with free text: the parse step cleans whatever string fields a schema has."""

    text: str
    tags: list[str]
    extra: dict[str, str]


@FUZZ
@given(nasty_text, st.lists(nasty_text, max_size=3), st.dictionaries(nasty_text, nasty_text, max_size=3))
def test_every_string_of_any_parsed_answer_is_storable(text: str, tags: list[str], extra: dict[str, str]) -> None:
    verdict = judge_answer(as_answer({"text": text, "tags": tags, "extra": extra}), cut_off=None, schema=Note,
                           validate=None)
    assert verdict.obj is not None
    assert_storable(verdict.obj.model_dump(), "answer")


# What cleaning removes without a trace (no space left behind): NUL, C0/C1 controls, DEL, surrogates.
junk = st.text(alphabet=st.sampled_from(["\x00", "\x01", "\x08", "\x1b", "\x7f", "\x9f", "\ud800", "\udfff"]),
               max_size=3)
texts_with_junk = st.lists(st.tuples(plain_text, junk), max_size=4)


@FUZZ
@given(texts_with_junk)
def test_junk_is_removed_and_line_breaks_and_markdown_are_kept(pieces: list[tuple[str, str]]) -> None:
    dirty = "".join(text + bad for text, bad in pieces)
    clean = "".join(text for text, _bad in pieces)
    verdict = judge_answer(as_answer({"text": dirty, "tags": [dirty], "extra": {}}), cut_off=None, schema=Note,
                           validate=None)
    assert isinstance(verdict.obj, Note) and (verdict.obj.text, verdict.obj.tags) == (clean, [clean])
    reasoning = {"analyst_verdict": "GENUINE", "suggested_ihl_score": 2, "red_flags": [], "reasoning": dirty}
    analyst = judge_answer(as_answer(reasoning), cut_off=None, schema=AnalystOutput, validate=None)
    assert isinstance(analyst.obj, AnalystOutput) and analyst.obj.reasoning == clean


@FUZZ
@given(st.lists(nasty_text, min_size=1, max_size=6))
def test_skill_names_are_stored_cleaned_and_non_empty_or_the_answer_is_rejected(names: list[str]) -> None:
    content = as_answer({"skills": [{"name": n, "importance": "important"} for n in names]})
    verdict = judge_answer(content, cut_off=None, schema=SkillList, validate=validate_skill_list)
    if verdict.obj is None:
        assert verdict.kind == "rejected" and "no usable skill name" in str(verdict.reason)
        assert_storable(verdict.reason, "corrective message")  # it is also part of the stored error
        return
    assert isinstance(verdict.obj, SkillList)
    ranked = ranked_skills(verdict.obj.skills)
    assert ranked
    for skill in ranked:
        assert skill.skill.strip() and not set(skill.skill) & FORBIDDEN
        skill.skill.encode("utf-8")


@FUZZ
@given(nasty_text, nasty_text, nasty_text)
def test_ihl_answers_are_storable_and_never_keep_an_empty_text(reasoning: str, flag: str, evidence: str) -> None:
    answer = {"ihl_score": 5, "verdict": "BORDERLINE", "confidence": "LOW", "candidate_pool_estimate": "SMALL (10-100)",
              "recommendation": "CAUTION", "reasoning": reasoning,
              "red_flags": [{"flag": flag, "evidence": evidence, "severity": "HIGH"}]}
    verdict = judge_answer(as_answer(answer), cut_off=None, schema=HRExpertOutput, validate=validate_role_output)
    if verdict.obj is None:
        assert verdict.kind == "rejected"
        assert_storable(verdict.reason, "corrective message")
        return
    assert isinstance(verdict.obj, HRExpertOutput)
    dumped = verdict.obj.model_dump()
    assert_storable(dumped, "ihl answer")
    assert dumped["reasoning"].strip() and dumped["red_flags"][0]["flag"].strip()
    assert dumped["red_flags"][0]["evidence"].strip()


@FUZZ
@given(nasty_text, st.lists(nasty_text, min_size=3, max_size=3), nasty_text)
def test_summaries_and_grades_render_storable_text(role: str, bullets: list[str], reason: str) -> None:
    fields = {"role": role, "company": "Deutsche Bank", "location": "Frankfurt", "job_id": None,
              "responsibilities": bullets, "requirements": ["Degree in finance", "Three years in banking",
                                                            "Fluent German"], "details": []}
    verdict = judge_answer(as_answer(fields), cut_off=None, schema=SummaryFields,
                           validate=validate_summary_fields)  # type: ignore[arg-type]
    if verdict.obj is not None:
        assert isinstance(verdict.obj, SummaryFields)
        summary = render_summary(verdict.obj)
        assert_storable(summary, "summary")
        assert all(line.strip() for line in summary.splitlines())  # no line left empty by the cleaning
        assert_storable(json.loads(verdict.obj.model_dump_json()), "fields_json")
    else:
        assert verdict.kind in ("schema_violation", "rejected")
    grade = judge_answer(as_answer({"verdict": "FAIL", "reasons": [reason]}), cut_off=None, schema=Grade,
                         validate=validate_grade)
    if grade.obj is not None:
        assert isinstance(grade.obj, Grade) and grade.obj.reasons[0].strip()
        assert_storable(grade.obj.reasons, "reasons")
    else:
        assert grade.kind == "rejected"


@FUZZ
@given(st.one_of(nasty_text, st.none(), st.integers()), st.one_of(nasty_text, st.none()),
       st.one_of(nasty_text, st.sampled_from(["B 28212", "B 2821\x002", "٢٨٢١٢", "B ٤٣٤١٤", "28212\x00"])))
def test_berufenet_details_become_storable_professions_or_counted_skips(
    name: Any, list_name: str | None, kldb: str
) -> None:
    outcome = profession_from_detail("12345", {"kurzBezeichnungNeutral": name, "kldb2010": kldb}, list_name)
    if isinstance(outcome, NamedProfession):
        assert outcome.name.strip() and outcome.name == " ".join(outcome.name.split())
        assert_storable(outcome.name, "name")
        assert outcome.kldb.isascii() and outcome.kldb.isdigit() and len(outcome.kldb) == 5
    else:
        kind, example = outcome
        assert kind in ("no_kldb", "no_name")
        assert_storable(example, "skip example")  # shown in the catalog's log and warnings
