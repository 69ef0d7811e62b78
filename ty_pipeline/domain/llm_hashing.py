"""The text an LLM sees for a posting, and the memo key of every LLM result.

`input_hash` = SHA-256 over the normalised model input, the prompt versions, the model names and the
output language. A saved result whose hash equals the hash a run would compute now is still valid; any
change to the posting text, a prompt (its version), a model or the language gives a new hash, and the
posting is recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ty_pipeline.domain.embedding_text import normalize_text

TRUNCATION_NOTE = "[… description truncated …]"


@dataclass(frozen=True)
class PostingText:
    text: str
    truncated: bool


def posting_text(
    *,
    title: str | None,
    employer: str | None,
    location: str | None,
    description: str,
    max_description_chars: int,
) -> PostingText:
    """The posting as the prompts show it: a few labelled facts, then the description.

    Long descriptions are cut at `max_description_chars` (at a word boundary): Ollama silently drops the
    *beginning* of a prompt that exceeds `num_ctx`, which would lose the instructions, so the asset
    keeps the input inside the window itself.
    """
    body = normalize_text(description)
    truncated = False
    if max_description_chars > 0 and len(body) > max_description_chars:
        cut = body.rfind(" ", 0, max_description_chars)
        body = body[: cut if cut > max_description_chars // 2 else max_description_chars] + " " + TRUNCATION_NOTE
        truncated = True
    lines = []
    if title:
        lines.append(f"Title: {normalize_text(title)}")
    if employer:
        lines.append(f"Employer: {normalize_text(employer)}")
    if location:
        lines.append(f"Location: {normalize_text(location)}")
    lines += ["Description:", body]
    return PostingText("\n".join(lines), truncated)


def location_text(city: str | None, state: str | None, country: str | None) -> str | None:
    parts = [p.strip() for p in (city, state, country) if p and p.strip()]
    return ", ".join(dict.fromkeys(parts)) or None


def input_hash(
    text: str, *, prompt_versions: Sequence[str], models: Sequence[str], language: str | None = None
) -> str:
    """64 hex characters; stable across processes and platforms (canonical JSON, UTF-8)."""
    payload = {
        "text": normalize_text(text),
        "prompts": list(prompt_versions),
        "models": list(models),
        "language": (language or "").strip().casefold(),
    }
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
