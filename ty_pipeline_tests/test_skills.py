"""Skill list schema and the normalisation into the distinct `skill_keywords` JSON array."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from ty_pipeline.domain.skills import SkillItem, SkillList, normalize_skills, skills_json


def item(name: str, importance: str = "important") -> SkillItem:
    return SkillItem(name=name, importance=importance)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Python  ", "Python"),
        ("- Python", "Python"),
        ("• Projekt\u00adleitung", "Projekt\u00adleitung"),
        ("* SQL.", "SQL"),
        ("1. Excel", "Excel"),
        ('"Teamfähigkeit"', "Teamfähigkeit"),
        ("„Kommunikationsstärke“", "Kommunikationsstärke"),
        ("'Risk Management';", "Risk Management"),
        ("Data   \n Analysis", "Data Analysis"),
        (".NET", ".NET"),
        ("C++", "C++"),
        ("C#,", "C#"),
        ("Node.js", "Node.js"),
    ],
)
def test_names_are_cleaned(raw: str, clean: str) -> None:
    assert normalize_skills([item(raw)]) == [clean]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  - ",
        '""',
        "x" * 61,
        "You will work closely with many teams across the whole bank",
        "Python. Experience with Django is a plus",
    ],
    ids=["empty", "bullet-only", "quotes-only", "over-long", "sentence", "two-sentences"],
)
def test_empty_long_and_sentence_like_entries_are_dropped(raw: str) -> None:
    assert normalize_skills([item(raw), item("SQL")]) == ["SQL"]


def test_limits_sixty_characters_and_six_words_are_still_a_name() -> None:
    sixty = "Aufsichtsrechtliches Meldewesen " + "x" * 28
    six_words = "Project management in agile delivery teams"
    seven_words = "Project management in large agile delivery teams"
    assert len(sixty) == 60
    assert normalize_skills([item(sixty), item(six_words), item(seven_words)]) == [sixty, six_words]


def test_duplicates_keep_first_spelling_and_best_importance() -> None:
    skills = [
        item("SQL", "preferred"),
        item("python", "important"),
        item("Excel", "important"),
        item("PYTHON.", "essential"),
        item("sql", "critical"),
        item("Straße", "preferred"),
        item("STRASSE", "preferred"),
    ]
    # SQL first appeared as "preferred" but a later copy says "critical": it moves up, spelled "SQL".
    assert normalize_skills(skills) == ["python", "SQL", "Excel", "Straße"]


def test_order_is_importance_then_first_appearance() -> None:
    skills = [
        item("Git", "preferred"),
        item("Java", "critical"),
        item("Scrum", "important"),
        item("Kotlin", "essential"),
        item("Jira", "important"),
        item("English", "essential"),
    ]
    assert normalize_skills(skills) == ["Kotlin", "English", "Java", "Scrum", "Jira", "Git"]


def test_plain_strings_sort_after_rated_skills() -> None:
    assert normalize_skills(["Docker", item("Go", "preferred"), "docker", "Linux"]) == ["Go", "Docker", "Linux"]


def test_skills_json_is_a_readable_json_array_of_distinct_strings() -> None:
    text = skills_json(["Teamfähigkeit", "Python", "python", "Kommunikationsstärke"])
    assert text == '["Teamfähigkeit", "Python", "Kommunikationsstärke"]'
    assert json.loads(text) == ["Teamfähigkeit", "Python", "Kommunikationsstärke"]
    assert skills_json([]) == "[]"


def test_schema_constrains_importance_and_keys() -> None:
    schema = SkillList.model_json_schema()
    item_schema = schema["$defs"]["SkillItem"]
    assert item_schema["properties"]["importance"]["enum"] == ["essential", "critical", "important", "preferred"]
    assert item_schema["additionalProperties"] is False
    parsed = SkillList.model_validate_json('{"skills": [{"name": "SQL", "importance": "critical"}]}')
    assert normalize_skills(parsed.skills) == ["SQL"]
    with pytest.raises(ValidationError):
        SkillList.model_validate_json('{"skills": [{"name": "SQL", "importance": "mandatory"}]}')
    with pytest.raises(ValidationError):
        SkillList.model_validate_json('{"skills": [{"name": "SQL", "importance": "critical", "weight": 80}]}')
