"""Shared pieces of the per-posting pipelines: what their results are keyed by, model options and answer
checks for free-text fields."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ty_pipeline.domain.degenerate import detect_refusal, detect_repetition, detect_template_artifacts
from ty_pipeline.domain.llm_hashing import input_hash
from ty_pipeline.prompts import Prompt, combined_version, prompt_versions

DEFAULT_TEMPERATURE = 0.0
DEFAULT_SEED = 42


class PipelineIdentity(ABC):
    """What a per-posting pipeline's saved rows are keyed and labelled by: its prompts and its models.

    The memo hash, the `prompt_version` column and the models a run checks before it starts are derived
    from `family`, `prompts` and `models` in one way for every pipeline, so a saved result stays valid
    exactly as long as none of them changed.
    """

    family: ClassVar[str]  # first part of the `prompt_version` column: `ihl/1.1.1+p1`

    @property
    @abstractmethod
    def prompts(self) -> list[Prompt]:
        """Every prompt a posting may meet, in a fixed order."""

    @property
    @abstractmethod
    def models(self) -> list[str]:
        """Every model a posting may meet, in a fixed order (part of the input hash)."""

    @property
    def prompt_versions(self) -> list[str]:
        return prompt_versions(self.prompts)

    @property
    def prompt_version(self) -> str:
        """`<family>/<each prompt's number>+p<posting context>` for the VARCHAR(32) column."""
        return combined_version(self.family, self.prompts)

    @property
    def distinct_models(self) -> list[str]:
        return list(dict.fromkeys(self.models))

    def hash_for(self, text: str) -> str:
        return input_hash(text, prompt_versions=self.prompt_versions, models=self.models)


@dataclass(frozen=True)
class ModelOptions:
    """Ollama `options` for every call: fixed temperature and seed so a re-run reproduces the answer,
    and an explicit context window (the server default depends on VRAM, docs/wire_formats.md §4.1)."""

    num_ctx: int = 8192
    num_predict: int = 1024
    temperature: float = DEFAULT_TEMPERATURE
    seed: int = DEFAULT_SEED

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "seed": self.seed, "num_ctx": self.num_ctx,
                "num_predict": self.num_predict}


def free_text_problems(labelled: Iterable[tuple[str, str]], *, refusals: bool = True) -> list[str]:
    """Loops, echoed template variables and (optionally) refusals in an answer's free-text fields."""
    problems: list[str] = []
    for label, value in labelled:
        findings = detect_repetition(value) + detect_template_artifacts(value)
        if refusals:
            findings += detect_refusal(value)
        problems += [f"{label}: {f.detail}" for f in findings]
    return problems


def retry_message(problems: list[str]) -> str | None:
    """The corrective message shown to the model, or None when there is nothing to correct."""
    if not problems:
        return None
    listed = "\n".join(f"- {p}" for p in problems[:10])
    return (
        "Your previous answer cannot be used because of these problems:\n"
        f"{listed}\n"
        "Answer again with JSON in the same schema, based only on the posting."
    )
