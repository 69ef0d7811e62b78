"""Second chance for a failed title: the LLM chooses among its top-k candidates with the start of a
posting description as context (upstream's `berufenet_description_retry`, 25-37 % yield)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.clients.ollama import OllamaError
from ty_pipeline.domain.berufenet_status import BerufenetStatus
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.profession_matching import Candidate, rank_candidates
from ty_pipeline.professions.llm import DESCRIPTION_CHARS, LlmChooser, description_excerpt
from ty_pipeline.professions.partition_run import CatalogMissing
from ty_pipeline.professions.vectors import build_matrix, ensure_name_vectors
from ty_pipeline.warehouse import berufenet_store as store


class UnknownFailedTitle(LookupError):
    """The partition key is not in `berufenet_failed_titles` (e.g. a different warehouse)."""


class RetryRejected(Exception):
    """The LLM found no fitting candidate even with the description: the partition stays failed."""


@dataclass
class RetryOutcome:
    title: str
    title_key: str
    status: str  # "resolved" or "already_resolved"
    profession: NamedProfession | None = None
    postings_updated: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    description_chars: int = 0
    llm_metrics: list[Any] = field(default_factory=list)


def _candidates(
    engine: Engine, row: store.FailedTitle, catalog: store.StoredCatalog, top_k: int,
    open_encoder: Callable[[], AbstractContextManager[TextEncoder]], now: Callable[[], datetime],
) -> list[Candidate]:
    """The stored top-k when they are still in the catalog, else a fresh embedding search."""
    stored = [c for c in row.candidates if c.profession_id in catalog.snapshot.professions][:top_k]
    if stored:
        return stored
    with open_encoder() as encoder:
        vectors, _stats = ensure_name_vectors(engine, encoder, catalog, now)
        matrix = build_matrix(catalog, vectors, encoder.model_id)
        query = np.asarray(encoder.encode([row.title]), dtype=np.float32)
        return rank_candidates(query, matrix, top_k)[0]


def retry_title(
    engine: Engine,
    partition_key: str,
    *,
    chooser: Callable[[], LlmChooser],
    open_encoder: Callable[[], AbstractContextManager[TextEncoder]],
    now: Callable[[], datetime],
    top_k: int = 5,
    context_chars: int = DESCRIPTION_CHARS,
    log: Callable[[str], None] = lambda _m: None,
) -> RetryOutcome:
    row = store.failed_title(engine, partition_key)
    if row is None:
        raise UnknownFailedTitle(f"no failed title has partition key {partition_key!r} in this warehouse")
    catalog = store.load_catalog(engine)
    if catalog.empty:
        raise CatalogMissing("The profession catalog is empty. Materialize `berufenet_catalog` first.")
    outcome = RetryOutcome(row.title, row.title_key, "resolved")

    learned = store.learned_for_keys(engine, [row.title_key]).get(row.title_key)
    if learned is not None and learned.profession_id in catalog.snapshot.professions:
        # Resolved since it failed (a later mapping run, an earlier retry): make sure every posting
        # has it, and succeed without asking the LLM again.
        prof = catalog.snapshot.professions[learned.profession_id]
        outcome.status, outcome.profession = "already_resolved", prof
        outcome.postings_updated = store.resolve_title_everywhere(
            engine, row.title_key, row.title, prof, str(BerufenetStatus.LEARNED), learned.score, "", now(),
            learn=False,
        )
        return outcome

    outcome.candidates = _candidates(engine, row, catalog, top_k, open_encoder, now)
    if not outcome.candidates:
        raise RetryRejected(f"no catalog candidates for '{row.title}'")
    description = description_excerpt(store.description_for_title(engine, row.title_key), context_chars)
    outcome.description_chars = len(description)
    llm = chooser()  # preflight: fails fast with the client's message when Ollama or the model is missing
    log(f"retrying '{row.title}' with {len(outcome.candidates)} candidates and {len(description)} characters "
        f"of description on {llm.model}")
    try:
        choice = llm.retry(row.title, description, outcome.candidates, catalog.snapshot.professions)
    except OllamaError as exc:
        store.set_title_error(engine, row.partition_key, f"retry: {type(exc).__name__}: {exc}"[:2000], now())
        raise
    outcome.llm_metrics = choice.metrics
    if choice.profession_id is None:
        listed = "; ".join(
            f"{catalog.snapshot.professions[c.profession_id].name} ({catalog.snapshot.professions[c.profession_id].kldb})"
            for c in outcome.candidates
        )
        context = f"{len(description)} characters of description" if description else "no description available"
        message = (f"The LLM ({llm.model}) found none of the {len(outcome.candidates)} candidates fitting for "
                   f"'{row.title}' ({context}). Candidates: {listed}")
        store.set_title_error(engine, row.partition_key, message, now())
        raise RetryRejected(message)
    prof = catalog.snapshot.professions[choice.profession_id]
    score = next((c.score for c in outcome.candidates if c.profession_id == prof.profession_id), None)
    outcome.profession = prof
    outcome.postings_updated = store.resolve_title_everywhere(
        engine, row.title_key, row.title, prof, str(BerufenetStatus.LLM_DESCRIPTION_RETRY), score, llm.model, now()
    )
    return outcome
