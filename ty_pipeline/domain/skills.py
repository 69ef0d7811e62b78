"""Skill lists: the LLM answer schema and the normalisation into the contract's `skill_keywords`.

The contract stores a JSON array of distinct (case-insensitive) skill names. Models pad lists with
bullets, quotes, whole sentences and case variants ("Python", "python."), so the names are cleaned here
in code before they are saved.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ty_pipeline.domain.answer_text import AnswerText

Importance = Literal["essential", "critical", "important", "preferred"]
# Best first; the legacy weights were essential 90-100, critical 65-89, important 35-64, preferred 10-34.
IMPORTANCE_RANK: dict[str, int] = {"essential": 0, "critical": 1, "important": 2, "preferred": 3}
# Plain strings (no importance given) sort after every rated skill.
_UNRATED_RANK = len(IMPORTANCE_RANK)

MAX_SKILL_CHARS = 60
MAX_SKILL_WORDS = 6
MAX_SKILLS = 30


class SkillItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Entities decoded and control characters removed on validation ("R&amp;D" is stored as "R&D"); a
    # name with nothing left is dropped by `normalize_skills` like any other unusable name.
    name: AnswerText = Field(
        description="Short atomic skill, tool, technology, soft skill or domain knowledge as named in the "
        "posting (1-4 words, German kept German), e.g. 'Python', 'IFRS', 'Teamfähigkeit'. Not a sentence.",
        # Schema only (what a constrained server can emit); a longer name from an unconstrained one is
        # dropped by `normalize_skills`, not a reason to reject the whole list.
        json_schema_extra={"minLength": 1, "maxLength": MAX_SKILL_CHARS},
    )
    importance: Importance = Field(
        description="essential: explicitly required; critical: strongly expected; important: clearly useful; "
        "preferred: nice to have."
    )


class SkillList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skills: list[SkillItem] = Field(
        max_length=MAX_SKILLS,
        description="Every distinct skill the posting asks for, each once.",
        # An empty list is never a result (`validate_skill_list` asks again): say so in the schema too.
        json_schema_extra={"minItems": 1},
    )


_BULLET_RE = re.compile(r"^(?:[-*•·–—▪►]+|\d{1,2}[.)])(?:\s+|$)")
_QUOTES = "\"'`“”„‘’‚«»‹›"
_TRAILING_PUNCT = ".,;:!?"
# More than one sentence ("Python. Experience required") is a description, not a skill name.
_SENTENCE_BREAK_RE = re.compile(r"[.!?;]\s+\S")


def clean_skill_name(raw: str) -> str:
    """Trimmed, single-spaced, without bullets, wrapping quotes or trailing punctuation; '' if nothing left.

    Leading dots and inner punctuation stay: ".NET", "C++", "Node.js", "C#".
    """
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    previous = None
    while previous != text:
        previous = text
        text = _BULLET_RE.sub("", text).strip().strip(_QUOTES).strip()
        text = text.rstrip(_TRAILING_PUNCT).rstrip()
    return text


def is_skill_name(name: str) -> bool:
    """A usable keyword: non-empty, at most 60 characters, and not sentence-like."""
    if not name or len(name) > MAX_SKILL_CHARS:
        return False
    return len(name.split()) <= MAX_SKILL_WORDS and not _SENTENCE_BREAK_RE.search(name)


def normalize_skills(items: Iterable[SkillItem | str]) -> list[str]:
    """Distinct cleaned names, best importance first, then order of first appearance.

    Duplicates (case-insensitive) keep the first spelling and the best importance any copy had.
    """
    first_spelling: dict[str, str] = {}
    best_rank: dict[str, int] = {}
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        raw, rank = (item, _UNRATED_RANK) if isinstance(item, str) else (item.name, IMPORTANCE_RANK[item.importance])
        name = clean_skill_name(raw)
        if not is_skill_name(name):
            continue
        key = name.casefold()
        if key not in first_spelling:
            first_spelling[key], best_rank[key], first_index[key] = name, rank, index
        else:
            best_rank[key] = min(best_rank[key], rank)
    ordered = sorted(first_spelling, key=lambda k: (best_rank[k], first_index[k]))
    return [first_spelling[k] for k in ordered]


def skills_json(names: Iterable[str]) -> str:
    """The `skill_keywords` column: a JSON array of strings, umlauts kept readable.

    Case-insensitive duplicates are dropped (first kept) so the column is distinct even for callers that
    skipped `normalize_skills`.
    """
    distinct: dict[str, str] = {}
    for name in names:
        distinct.setdefault(name.casefold(), name)
    return json.dumps(list(distinct.values()), ensure_ascii=False)
