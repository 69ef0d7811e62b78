"""The two LLM decisions of the mapper: verify a title against its top-k candidates, and retry a failed
title with description context. Both ask the model to pick one numbered candidate or none.

The replaced system parsed YES/NO/UNCERTAIN out of free text by substring (docs/domain_rules.md §6.3); here the
answer is a JSON object validated against a pydantic schema, and a number outside the list is an invalid
answer (corrected once by the client, then an error), never a guess.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ty_pipeline.clients.llm_hosts import LlmClient
from ty_pipeline.domain.embedding_text import normalize_text
from ty_pipeline.domain.kldb_catalog import QUALIFICATION_LEVELS, NamedProfession
from ty_pipeline.domain.profession_matching import Candidate
from ty_pipeline.prompts import Prompt, load_prompt

DEFAULT_BERUFENET_MODEL = "qwen2.5:7b-instruct"
"""The replaced system used qwen2.5:7b (qwen2.5:3b was faster but answered UNCERTAIN on obvious
mismatches, docs/domain_rules.md §6.3)."""
VERIFY_PROMPT = "berufenet_verify"
RETRY_PROMPT = "berufenet_retry"
DESCRIPTION_CHARS = 800
LLM_OPTIONS: dict[str, Any] = {"temperature": 0, "seed": 42, "num_ctx": 4096, "num_predict": 64}
"""The answer is one small JSON object; a short output limit stops a rambling model early."""


class CandidateChoice(BaseModel):
    """The model's answer: a candidate number, 0 for none. Sent per call as `choice_schema(n)`."""

    model_config = ConfigDict(title="CandidateChoice")

    choice: int = Field(ge=0, le=50, description="number of the matching candidate, 0 if none matches")


@functools.cache
def choice_schema(candidates: int) -> type[CandidateChoice]:
    """The answer schema for a list of `candidates`: `choice` bounded to 0..candidates.

    A grammar-constrained server can only emit what the schema allows; with a fixed bound of 50 it
    answered 24 for a list of five, which became an `error` row.
    """
    return create_model(
        f"CandidateChoiceOf{candidates}",
        __base__=CandidateChoice,
        choice=(int, Field(ge=0, le=candidates, description=f"number of the matching candidate (1 to {candidates}), "
                                                          "0 if none matches")),
    )


@dataclass(frozen=True)
class Choice:
    profession_id: str | None  # None: the model said none of the candidates
    number: int
    metrics: list[Any] = field(default_factory=list)


def description_excerpt(text: str | None, max_chars: int = DESCRIPTION_CHARS) -> str:
    """The first `max_chars` characters of a description, cut at a word boundary.

    A cut inside a word can turn "Pflegefachkraft" into "Pflege", which is a different job.
    """
    if not text:
        return ""
    text = normalize_text(text)
    if len(text) <= max_chars:
        return text
    cut = text.rfind(" ", 0, max_chars + 1)
    if cut < max_chars // 2:
        cut = max_chars
    return text[:cut].rstrip(" ,;:-") + " …"


def render_candidates(candidates: Sequence[Candidate], professions: Mapping[str, NamedProfession]) -> str:
    """"1. Softwareentwickler/in (KldB 43414, Niveau 4 Experte)" per line, numbered from 1."""
    lines = []
    for number, cand in enumerate(candidates, start=1):
        prof = professions[cand.profession_id]
        level = QUALIFICATION_LEVELS.get(prof.qualification_level, "?")
        lines.append(f"{number}. {prof.name} (KldB {prof.kldb}, Niveau {prof.qualification_level} {level})")
    return "\n".join(lines)


class LlmChooser:
    """Asks one Ollama model to pick among candidates. Thread-safe (the client is)."""

    def __init__(self, client: LlmClient, model: str, *, options: Mapping[str, Any] | None = None) -> None:
        self.client = client
        self.model = model
        self.options = dict(LLM_OPTIONS if options is None else options)
        self.verify_prompt: Prompt = load_prompt(VERIFY_PROMPT)
        self.retry_prompt: Prompt = load_prompt(RETRY_PROMPT)

    def _ask(
        self, prompt: Prompt, candidates: Sequence[Candidate], professions: Mapping[str, NamedProfession],
        **values: str,
    ) -> Choice:
        usable = [c for c in candidates if c.profession_id in professions]
        if not usable:
            return Choice(None, 0)
        messages = prompt.render(candidates=render_candidates(usable, professions), **values)

        def validate(answer: BaseModel) -> str | None:
            assert isinstance(answer, CandidateChoice)
            if answer.choice > len(usable):
                return (
                    f"Your previous answer cannot be used: {answer.choice} is not one of the candidate numbers "
                    f"1 to {len(usable)}. Answer with one of those numbers, or 0 if none matches."
                )
            return None

        answer, metrics = self.client.chat_structured(
            model=self.model, messages=messages, schema=choice_schema(len(usable)), options=self.options,
            validate=validate,
        )
        assert isinstance(answer, CandidateChoice)
        pid = usable[answer.choice - 1].profession_id if answer.choice > 0 else None
        return Choice(pid, answer.choice, list(metrics))

    def verify(
        self, title: str, candidates: Sequence[Candidate], professions: Mapping[str, NamedProfession]
    ) -> Choice:
        return self._ask(self.verify_prompt, candidates, professions, title=title)

    def retry(
        self, title: str, description: str, candidates: Sequence[Candidate],
        professions: Mapping[str, NamedProfession],
    ) -> Choice:
        context = description or "(keine Beschreibung verfügbar)"
        return self._ask(self.retry_prompt, candidates, professions, title=title, description=context)
