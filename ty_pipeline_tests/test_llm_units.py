"""The pure parts of LLM enrichment: prompt files, the memo key, work selection, skill ranking, metrics."""

from __future__ import annotations

from datetime import date

import pytest

from ty_pipeline.domain.llm_hashing import TRUNCATION_NOTE, input_hash, location_text, posting_text
from ty_pipeline.domain.llm_selection import Candidate, LlmStatus, plan_work
from ty_pipeline.domain.skills import SkillItem
from ty_pipeline.enrichment.metrics import CallStats, percentile
from ty_pipeline.enrichment.skills import ranked_skills
from ty_pipeline.prompts import (
    POSTING_CONTEXT,
    PROMPT_DIR,
    PromptError,
    combined_version,
    load_posting_context,
    load_prompt,
    parse_posting_context,
    parse_prompt,
)

PROMPTS = ["summary_extract", "summary_grade", "summary_improve", "skills_extract",
           "ihl_analyst", "ihl_skeptic", "ihl_hr_expert"]
LONG_TEXT = "Wir suchen eine engagierte Fachkraft für unser Team in Frankfurt. " * 4


# -- prompts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROMPTS)
def test_every_prompt_file_loads_with_its_own_versioned_name_and_a_posting_slot(name: str) -> None:
    prompt = load_prompt(name)
    assert prompt.version == f"{name}/2"
    assert "posting" in prompt.fields and prompt.takes_posting
    messages = prompt.render(**dict.fromkeys(prompt.fields, "X"))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert all(m["content"].strip() for m in messages)
    assert "{" not in messages[0]["content"] + messages[1]["content"]  # every template field was filled


def test_posting_text_with_braces_is_inserted_verbatim_and_never_parsed_as_a_template() -> None:
    prompt = load_prompt("summary_extract")
    hostile = "Stelle {SR9207358} {language} {0} {{x}} and }{ unbalanced"
    context, user = (m["content"] for m in prompt.render(posting=hostile, language="Spanish"))
    assert hostile in context
    assert "Summary language: Spanish" in user and "Spanish" not in context


def test_rendering_without_a_value_is_an_error_not_an_empty_slot() -> None:
    with pytest.raises(PromptError, match="language"):
        load_prompt("summary_extract").render(posting="x")


@pytest.mark.parametrize(
    "text, message",
    [
        ("## system\na\n## user\nb", "first line"),
        ("version: other/1\n## system\na\n## user\nb", "must look like"),
        ("version: p/1\n## system\na\n", "user"),
        ("version: p/1\n## system\na {x\n## user\nb", "p"),
        ("version: p/1\n## instructions\na\n## system\nc\n## user\nb", "instructions"),
        ("version: p/1\n## instructions\na\n", "user"),
        # the posting belongs in the shared context only: a prompt showing it itself breaks the prefix
        ("version: p/1\n## instructions\na\n## user\n<posting>\n{posting}\n</posting>", "posting_context"),
        ("version: p/1\n## system\na {posting}\n## user\nb", "posting_context"),
    ],
)
def test_malformed_prompt_files_are_rejected_at_load_time(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        parse_prompt("p", text)


def test_combined_versions_fit_the_prompt_version_column() -> None:
    families = {"summary": PROMPTS[:3], "ihl": PROMPTS[4:]}
    for family, names in families.items():
        version = combined_version(family, [load_prompt(n) for n in names])
        assert version == f"{family}/2.2.2+p1"
        assert len(version) <= 32


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: posting_context/1\n## system\n<posting>\n{posting}\n</posting>\n## user\nb", "one section"),
        ("version: posting_context/1\n## system\n<posting>\n{posting} {language}\n</posting>", "language"),
        ("version: posting_context/1\n## system\nThe posting: {posting}", "fenced"),
        ("version: posting_context/1\n## system\n<posting>\n</posting>", "none"),
    ],
)
def test_a_malformed_posting_context_is_rejected(text: str, message: str) -> None:
    with pytest.raises(PromptError, match=message):
        parse_posting_context(text)


def test_the_posting_context_is_not_a_prompt_of_its_own() -> None:
    assert load_posting_context().version == f"{POSTING_CONTEXT}/1"
    with pytest.raises(PromptError, match="load_posting_context"):
        load_prompt(POSTING_CONTEXT)



def test_every_prompt_file_in_the_package_parses() -> None:
    files = sorted(PROMPT_DIR.glob("*.md"))
    assert {f"{n}.md" for n in PROMPTS} <= {f.name for f in files}
    for path in files:
        loaded = load_posting_context() if path.stem == POSTING_CONTEXT else load_prompt(path.stem)
        assert loaded.version.startswith(f"{path.stem}/")


# -- the memo key -----------------------------------------------------------------------------------------


def test_input_hash_changes_with_each_component_and_ignores_whitespace_noise() -> None:
    base = input_hash("Senior Analyst\nFrankfurt", prompt_versions=["a/1"], models=["m1"], language="English")
    assert len(base) == 64
    assert input_hash("Senior  Analyst Frankfurt ", prompt_versions=["a/1"], models=["m1"], language="english") == base
    variants = [
        input_hash("Senior Analyst Berlin", prompt_versions=["a/1"], models=["m1"], language="English"),
        input_hash("Senior Analyst Frankfurt", prompt_versions=["a/2"], models=["m1"], language="English"),
        input_hash("Senior Analyst Frankfurt", prompt_versions=["a/1"], models=["m2"], language="English"),
        input_hash("Senior Analyst Frankfurt", prompt_versions=["a/1"], models=["m1"], language="German"),
    ]
    assert len({base, *variants}) == 5


def test_posting_text_labels_the_facts_and_cuts_long_descriptions_at_a_word() -> None:
    text = posting_text(title="Analyst (m/w/d)", employer="Deutsche Bank",
                        location=location_text("Frankfurt", "Hessen", "Frankfurt"),
                        description="wort " * 100, max_description_chars=52)
    assert text.truncated
    assert text.text.startswith("Title: Analyst (m/w/d)\nEmployer: Deutsche Bank\nLocation: Frankfurt, Hessen\n")
    assert text.text.split("Description:\n", 1)[1] == " ".join(["wort"] * 10) + " " + TRUNCATION_NOTE
    assert not posting_text(title=None, employer=None, location=None, description="kurz",
                            max_description_chars=52).truncated


# -- selection --------------------------------------------------------------------------------------------


def _candidate(pid: int, *, description: str | None = LONG_TEXT, status: str | None = None,
               saved_hash: str | None = None, attempts: int = 0) -> Candidate:
    return Candidate(pid, "deutsche_bank", str(pid), f"Job {pid}", "Deutsche Bank", "Frankfurt", None, None,
                     date(2026, 11, 18), description, status, saved_hash, attempts)


def _hash(text: str) -> str:
    return input_hash(text, prompt_versions=["p/1"], models=["m"])


def _key(pid: int, description: str = LONG_TEXT) -> str:
    return _hash(posting_text(title=f"Job {pid}", employer="Deutsche Bank", location="Frankfurt",
                              description=description, max_description_chars=10_000).text)


def test_plan_reuses_terminal_rows_retries_errors_within_attempts_and_caps_newest_first() -> None:
    candidates = [
        _candidate(9),  # new
        _candidate(8, status=LlmStatus.PASSED, saved_hash=_key(8)),  # cached
        _candidate(7, status=LlmStatus.FAILED_GRADING, saved_hash=_key(7)),  # terminal for its hash
        _candidate(6, status=LlmStatus.PASSED, saved_hash="old-hash"),  # changed input: recompute
        _candidate(5, status=LlmStatus.LLM_ERROR, saved_hash=_key(5), attempts=2),  # retry, attempt 3
        _candidate(4, status=LlmStatus.LLM_ERROR, saved_hash=_key(4), attempts=3),  # out of attempts
        _candidate(3, description="zu kurz"),  # skipped
        _candidate(2, description=None, status=LlmStatus.SKIPPED_NO_DESCRIPTION,
                   saved_hash=_hash(posting_text(title="Job 2", employer="Deutsche Bank", location="Frankfurt",
                                                 description="", max_description_chars=10_000).text)),
        _candidate(1),  # new, but beyond the cap
    ]
    plan = plan_work(candidates, hash_for=_hash, max_attempts=3, max_postings=3, max_description_chars=10_000)
    assert [(i.posting_id, i.attempt) for i in plan.to_compute] == [(9, 1), (6, 1), (5, 3)]
    assert [i.posting_id for i in plan.pending] == [1]
    assert [i.posting_id for i in plan.skipped] == [3]
    assert (plan.cached, plan.exhausted, plan.retries) == (3, 1, 1)
    assert plan.in_scope == len(candidates)
    assert all(i.input_hash == _key(i.posting_id) for i in plan.to_compute)

    unlimited = plan_work(candidates, hash_for=_hash, max_attempts=3, max_postings=None, max_description_chars=10_000)
    assert [i.posting_id for i in unlimited.to_compute] == [9, 6, 5, 1] and not unlimited.pending


# -- skills -----------------------------------------------------------------------------------------------


def test_ranked_skills_are_distinct_best_importance_first_and_drop_filler() -> None:
    items = [
        SkillItem(name="- python.", importance="important"),
        SkillItem(name="SQL", importance="preferred"),
        SkillItem(name="Python", importance="essential"),
        SkillItem(name="N/A", importance="essential"),
        SkillItem(name="{skill_1}", importance="critical"),
        SkillItem(name="Teamfähigkeit", importance="critical"),
    ]
    ranked = [(s.skill, s.importance, s.rank) for s in ranked_skills(items)]
    assert ranked == [("python", "essential", 1), ("Teamfähigkeit", "critical", 2), ("SQL", "preferred", 3)]
    assert ranked_skills([SkillItem(name="not specified", importance="essential")]) == []


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (10.0, 19.0, 20.0)


def test_call_stats_sum_cached_prompt_tokens_where_the_server_reports_them() -> None:
    class Reported:  # an OpenAI-compatible answer with usage.prompt_tokens_details.cached_tokens
        prompt_eval_count, cached_prompt_tokens, model = 1200, 1000, "m"

    class Unreported:  # Ollama: no such attribute, or None
        prompt_eval_count, model = 900, "m"

    class Empty:
        prompt_eval_count, cached_prompt_tokens, model = 300, None, "m"

    stats = CallStats()
    stats.add([Reported(), Unreported(), Empty(), Reported()])
    summary = stats.summary()
    assert (summary["prompt_tokens"], summary["cached_prompt_tokens"]) == (3600, 2000)
