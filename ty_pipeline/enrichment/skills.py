"""The skill pipeline for one posting: one JSON-schema call, then normalisation in code.

An answer whose list is empty after normalisation is not a result: the corrective retry tells the
model so, and if the second answer is empty too the posting is recorded as `llm_error`, never as an
empty skill list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from ty_pipeline.domain.degenerate import detect_template_artifacts, is_filler_value
from ty_pipeline.domain.llm_selection import LlmStatus, WorkItem
from ty_pipeline.domain.skills import (
    IMPORTANCE_RANK,
    MAX_SKILL_CHARS,
    MAX_SKILL_WORDS,
    SkillItem,
    SkillList,
    clean_skill_name,
    normalize_skills,
    skills_json,
)
from ty_pipeline.enrichment.llm_call import ModelOptions, PipelineIdentity
from ty_pipeline.enrichment.runner import POSTING_ERRORS, Outcome, error_outcome
from ty_pipeline.prompts import Prompt, load_prompt

DEFAULT_SKILLS_MODEL = "qwen2.5:7b-instruct"
_UNRATED = "unrated"


def usable_items(items: list[SkillItem]) -> list[SkillItem]:
    """Items whose name is not filler ("N/A", "nicht angegeben") or an echoed template variable."""
    kept: list[SkillItem] = []
    for item in items:
        name = clean_skill_name(item.name)
        if not name or is_filler_value(name) or detect_template_artifacts(name):
            continue
        kept.append(item)
    return kept


@dataclass(frozen=True)
class RankedSkill:
    skill: str
    importance: str
    rank: int  # 1 = first in the stored list


def ranked_skills(items: list[SkillItem]) -> list[RankedSkill]:
    """The stored list (normalised, distinct, best importance first) with each name's best importance."""
    usable = usable_items(items)
    best: dict[str, str] = {}
    for item in usable:
        key = clean_skill_name(item.name).casefold()
        current = best.get(key)
        if current is None or IMPORTANCE_RANK[item.importance] < IMPORTANCE_RANK[current]:
            best[key] = item.importance
    names = normalize_skills(usable)
    return [RankedSkill(name, best.get(name.casefold(), _UNRATED), rank) for rank, name in enumerate(names, start=1)]


def validate_skill_list(answer: BaseModel) -> str | None:
    assert isinstance(answer, SkillList)
    if ranked_skills(answer.skills):
        return None
    dropped = [s.name for s in answer.skills][:5]
    detail = f" (none of {dropped} is usable)" if dropped else ""
    return (
        "Your previous answer cannot be used: it contains no usable skill name" + detail + ".\n"
        f"List every skill the posting asks for, each as a short keyword of at most {MAX_SKILL_WORDS} words "
        f"and {MAX_SKILL_CHARS} characters (for example 'Python', 'IFRS', 'Teamfähigkeit'), "
        "with JSON in the same schema."
    )


@dataclass(frozen=True)
class SkillSettings:
    model: str = DEFAULT_SKILLS_MODEL
    options: ModelOptions = ModelOptions(num_predict=768)


class SkillPipeline(PipelineIdentity):
    family = "skills_extract"

    def __init__(self, client: Any, settings: SkillSettings) -> None:
        self.client = client
        self.settings = settings
        self.prompt: Prompt = load_prompt("skills_extract")

    @property
    def prompts(self) -> list[Prompt]:
        return [self.prompt]

    @property
    def models(self) -> list[str]:
        return [self.settings.model]

    def base_values(self) -> dict[str, Any]:
        """Columns every row gets, skipped postings included."""
        return {"model": self.settings.model, "prompt_version": self.prompt_version}

    def run(self, item: WorkItem) -> Outcome:
        values = self.base_values()
        try:
            answer, metrics = self.client.chat_structured(
                model=self.settings.model,
                messages=self.prompt.render(posting=item.text),
                schema=SkillList,
                options=self.settings.options.as_dict(),
                validate=validate_skill_list,
            )
        except POSTING_ERRORS as exc:
            return error_outcome(exc, stage="skills", values=values)
        assert isinstance(answer, SkillList)
        ranked = ranked_skills(answer.skills)
        if not ranked:  # the client returned an answer its own validate rejected: never store it
            return Outcome(LlmStatus.LLM_ERROR, values, error="skills: no usable skill names", metrics=list(metrics))
        return Outcome(
            LlmStatus.OK,
            {**values, "skills_json": skills_json(s.skill for s in ranked)},
            metrics=list(metrics),
            items=[{"skill": s.skill, "importance": s.importance, "rank": s.rank} for s in ranked],
        )
