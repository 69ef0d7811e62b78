"""Shared pieces of the per-posting pipelines: model options and answer checks for free-text fields."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ty_pipeline.domain.degenerate import detect_refusal, detect_repetition, detect_template_artifacts

DEFAULT_TEMPERATURE = 0.0
DEFAULT_SEED = 42


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
