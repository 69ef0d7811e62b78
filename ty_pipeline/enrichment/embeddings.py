"""Embedding one partition's postings outside Dagster, page by page, in bounded memory.

`ty_pipeline/assets/embeddings.py` is the Dagster glue around `embed_partition`; `bench/bench_embeddings.py`
calls it directly. Each page of postings is read, planned, encoded and committed before the next one is
read, and only counters survive a page: memory stays flat however large the day is, and a crash loses
at most one page of work (the next run finds the committed vectors by hash).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine

from ty_pipeline.clients.embedder import TextEncoder, encode_texts
from ty_pipeline.domain.embedding_text import SkipReason, plan_embeddings
from ty_pipeline.domain.progress import Progress
from ty_pipeline.warehouse.embeddings_store import (
    NewVector,
    StoredVectorAudit,
    audit_vectors,
    count_partition_postings,
    existing_hashes,
    iter_posting_text_pages,
    link_postings,
    postings_linked_to,
    retire_links,
    save_vectors,
)

FAILED_EXAMPLES = 10  # hashes of unusable vectors kept for the log; the count is exact


@dataclass
class EmbedRun:
    """Counters of one partition run (nothing here grows with the number of postings)."""

    model: str = ""
    processed: int = 0
    up_to_date: int = 0
    cached: int = 0
    new: int = 0
    embedded_postings: int = 0
    changed_text: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=lambda: dict.fromkeys(SkipReason, 0))
    failed: int = 0  # texts the model returned no usable vector for
    failed_postings: int = 0  # postings left without a vector because of them
    failed_examples: list[str] = field(default_factory=list)
    chunks: int = 0
    duplicate_chunks: int = 0  # chunks reused from an identical chunk of the same page instead of encoded
    chunked_texts: int = 0
    encode_calls: int = 0
    encode_seconds: float = 0.0
    pages: int = 0
    dim: int = 0

    @property
    def eligible(self) -> int:
        return self.up_to_date + self.cached + self.embedded_postings + self.failed_postings


def embed_partition(
    engine: Engine,
    day: date,
    encoder: TextEncoder,
    *,
    max_chars: int,
    batch_size: int,
    page_size: int = 256,
    now: Callable[[], datetime],
    log: Callable[[str], None] = lambda _m: None,
    on_page: Callable[[EmbedRun, int], None] | None = None,
) -> EmbedRun:
    """Give every eligible posting of `day` a current vector of its current text for `encoder`'s model.

    Per page: retire links to stale texts (before encoding, so a crash never leaves a stale vector
    current), link postings whose text already has a vector (any run, posting or catalog name), encode
    the rest, and store vectors and links in one transaction. `on_page(run, total)` is called after each
    committed page (the benchmark samples memory there).
    """
    model = encoder.model_id
    run = EmbedRun(model=model)
    total = count_partition_postings(engine, day)
    progress = Progress("embeddings", total, log)
    for page in iter_posting_text_pages(engine, day, page_size):
        run.pages += 1
        plan = plan_embeddings(page, model)
        run.processed += plan.processed
        run.up_to_date += len(plan.up_to_date)
        run.changed_text += plan.changed_text
        for reason, n in plan.skipped.items():
            run.skipped[reason] += n
        retire_links(engine, plan.retire, now())

        cached_hashes = existing_hashes(engine, plan.to_link, model)
        cached_links = [(pid, h) for h in cached_hashes for pid in plan.to_link[h]]
        link_postings(engine, cached_links, model, now())
        run.cached += len(cached_links)

        to_encode = [h for h in plan.to_link if h not in cached_hashes]
        if to_encode:
            t0 = time.monotonic()
            encoded = encode_texts(encoder, [plan.texts[h] for h in to_encode], max_chars=max_chars,
                                   batch_size=batch_size)
            run.encode_seconds += time.monotonic() - t0
            run.chunks += encoded.chunks
            run.duplicate_chunks += encoded.duplicate_chunks
            run.chunked_texts += encoded.chunked_texts
            run.encode_calls += encoded.encode_calls
            vectors: list[NewVector] = []
            for h, vector in zip(to_encode, encoded.vectors, strict=True):
                if vector is None:
                    run.failed += 1
                    run.failed_postings += len(plan.to_link[h])
                    if len(run.failed_examples) < FAILED_EXAMPLES:
                        run.failed_examples.append(h)
                    continue
                run.dim = int(vector.shape[0])
                vectors.append(NewVector(h, plan.texts[h], vector))
            links = [(pid, v.text_hash) for v in vectors for pid in plan.to_link[v.text_hash]]
            save_vectors(engine, model, vectors, links, now())  # committed: a retry starts after this page
            run.new += len(vectors)
            run.embedded_postings += len(links)
        progress.step(len(page))
        if on_page is not None:
            on_page(run, total)
    return run


def count_missing(engine: Engine, day: date, model: str, *, examples: int = 10,
                  page_size: int = 1000) -> tuple[int, list[int]]:
    """Eligible postings of `day` without a current vector of their current text, from what is stored now
    (the same planner as the run, so anything it would still do counts as missing), and the ids of the
    first `examples` of them."""
    missing = 0
    first: list[int] = []
    for page in iter_posting_text_pages(engine, day, page_size):
        plan = plan_embeddings(page, model)
        missing += plan.pending
        for ids in plan.to_link.values():
            first.extend(ids[: max(0, examples - len(first))])
    return missing, first


MISSING_REASON = "no current embedding (unusable vector or encoding failed)"


@dataclass(frozen=True)
class Certification:
    """What the `embedding_certified` check reads, from what is stored after the run: the day's eligible
    postings still without a current vector (the replaced system's `need = 0`) and the audit of the vectors
    they point at (`corrupt = 0`), with (posting id, reason) examples of both."""

    missing: int
    audit: StoredVectorAudit
    offenders: list[tuple[int, str]]

    @property
    def passed(self) -> bool:
        return self.missing == 0 and self.audit.corrupt_hashes == 0 and self.audit.invalid_vectors == 0


def certify_partition(engine: Engine, day: date, model: str, *, examples: int = 10) -> Certification:
    """Certify `day` for `model` from the warehouse alone, with the same planner as the run: anything it
    would still do counts as missing."""
    audit = audit_vectors(engine, day=day)
    missing, missing_ids = count_missing(engine, day, model, examples=examples)
    offenders = [(pid, MISSING_REASON) for pid in missing_ids]
    if audit.bad_hashes:
        offenders += [(pid, audit.bad_hashes[h]) for pid, h in postings_linked_to(engine, audit.bad_hashes, day)]
    return Certification(missing, audit, offenders)
