"""Reads and writes of `embeddings` (content-addressed vectors) and `posting_embeddings` (links).

A vector is stored once per (normalised text, model), whoever needs it: postings sharing a text,
catalog names, later runs. A posting's link row is `is_current` while its hash is the hash of the
posting's current text; old links stay as history with `is_current` false.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from sqlalchemy import Connection, Engine, and_, bindparam, func, select, update

from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.embedding_text import PostingText, content_hash
from ty_pipeline.domain.vectors import usable_vector
from ty_pipeline.warehouse.schema import (
    embeddings,
    job_descriptions,
    posting_embeddings,
    posting_summaries,
    postings,
)
from ty_pipeline.warehouse.upsert import chunks, insert_new, upsert

_IN_CHUNK = 500
_TEXT_STATUSES = (str(DescriptionStatus.OK), str(DescriptionStatus.TOO_SHORT))




def vector_to_bytes(vector: np.ndarray) -> bytes:
    """Little-endian float32: 4 bytes per dimension, the same bytes on every platform and backend."""
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(blob: bytes) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)


def load_posting_texts(engine: Engine, day: date) -> list[PostingText]:
    """All of the partition's postings at once (small partitions, tests); the asset reads them in pages."""
    return [p for page in iter_posting_text_pages(engine, day) for p in page]


def iter_posting_text_pages(engine: Engine, day: date, page_size: int = 256) -> Iterator[list[PostingText]]:
    """Non-invalidated postings of the partition, `page_size` at a time in posting_id order, with their
    summary, description and current links.

    Keyset pages (posting_id > last seen), each read in its own short connection: a day of 16,000
    postings with 3 kB texts never sits in memory at once, and the caller may write (commit) between
    pages. Only links whose vector exists count as current, so a missing vector is repaired by the next run.
    """
    pe, jd, ps = posting_embeddings, job_descriptions, posting_summaries
    after = -1
    while True:
        texts_query = (
            select(postings.c.posting_id, ps.c.summary, jd.c.description, jd.c.status)
            .select_from(
                postings.outerjoin(jd, jd.c.posting_id == postings.c.posting_id).outerjoin(
                    ps, ps.c.posting_id == postings.c.posting_id
                )
            )
            .where(postings.c.partition_date == day, postings.c.invalidated.is_(False), postings.c.posting_id > after)
            .order_by(postings.c.posting_id)
            .limit(max(1, page_size))
        )
        with engine.connect() as conn:
            rows = conn.execute(texts_query).all()
            if not rows:
                return
            ids = [row.posting_id for row in rows]
            links_query = (
                select(pe.c.posting_id, pe.c.model, pe.c.text_hash)
                .select_from(
                    pe.join(embeddings, and_(embeddings.c.text_hash == pe.c.text_hash, embeddings.c.model == pe.c.model))
                )
                .where(pe.c.posting_id.in_(ids), pe.c.is_current.is_(True))
            )
            current: dict[int, dict[str, str]] = {}
            for posting_id, model, text_hash in conn.execute(links_query):
                current.setdefault(posting_id, {})[model] = text_hash
        yield [
            PostingText(
                posting_id=row.posting_id,
                summary=row.summary,
                description=row.description if row.status in _TEXT_STATUSES else None,
                current_hashes=current.get(row.posting_id, {}),
            )
            for row in rows
        ]
        after = ids[-1]
        del rows


def count_partition_postings(engine: Engine, day: date) -> int:
    """How many postings `iter_posting_text_pages` will yield (for progress lines)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(postings)
                .where(postings.c.partition_date == day, postings.c.invalidated.is_(False))
            ).scalar_one()
        )


def existing_hashes(engine: Engine, hashes: Iterable[str], model: str) -> set[str]:
    """Which of these texts already have a vector for this model (from any run, posting or catalog)."""
    wanted = sorted(set(hashes))
    found: set[str] = set()
    with engine.connect() as conn:
        for part in chunks(wanted, _IN_CHUNK):
            found.update(
                conn.execute(
                    select(embeddings.c.text_hash).where(embeddings.c.model == model, embeddings.c.text_hash.in_(part))
                ).scalars()
            )
    return found


def retire_links(engine: Engine, retire: dict[int, str | None], now: datetime) -> int:
    """Mark links not current: all of a posting's (None) or all but the one with the kept hash.

    Runs before any encoding, so a crash mid-run leaves `has_embedding` false, never stale-true.
    """
    pe = posting_embeddings
    drop_all = [pid for pid, keep in retire.items() if keep is None]
    keep_one = [{"pid": pid, "keep": keep} for pid, keep in retire.items() if keep is not None]
    count = 0
    with engine.begin() as conn:
        for part in chunks(drop_all, _IN_CHUNK):
            count += conn.execute(
                update(pe).where(pe.c.posting_id.in_(part), pe.c.is_current.is_(True)).values(
                    is_current=False, updated_at=now
                )
            ).rowcount
        if keep_one:
            stmt = (
                update(pe)
                .where(
                    pe.c.posting_id == bindparam("pid"),
                    pe.c.text_hash != bindparam("keep"),
                    pe.c.is_current.is_(True),
                )
                .values(is_current=False, updated_at=now)
            )
            result = conn.execute(stmt, keep_one)
            count += max(result.rowcount, 0)
    return count


def _link(conn: Connection, engine: Engine, links: Sequence[tuple[int, str]], model: str, now: datetime) -> None:
    if not links:
        return
    rows = [
        {"posting_id": pid, "text_hash": h, "model": model, "is_current": True, "updated_at": now} for pid, h in links
    ]
    for part in chunks(rows, _IN_CHUNK):
        conn.execute(upsert(
            engine, posting_embeddings, part, keys=["posting_id", "model", "text_hash"], update=["updated_at"],
            extra_set={"is_current": True},
        ))


def link_postings(engine: Engine, links: Sequence[tuple[int, str]], model: str, now: datetime) -> None:
    """Point postings at vectors that already exist (no encoding)."""
    with engine.begin() as conn:
        _link(conn, engine, links, model, now)


@dataclass(frozen=True)
class NewVector:
    text_hash: str
    text: str
    vector: np.ndarray


def save_vectors(
    engine: Engine, model: str, vectors: Sequence[NewVector], links: Sequence[tuple[int, str]], now: datetime
) -> None:
    """Store new vectors and link their postings in one transaction.

    A vector another run stored meanwhile wins (same text, same model: the same vector up to float noise).
    """
    with engine.begin() as conn:
        rows = [
            {
                "text_hash": v.text_hash,
                "model": model,
                "dim": int(v.vector.shape[0]),
                "vector": vector_to_bytes(v.vector),
                "text": v.text,
                "created_at": now,
            }
            for v in vectors
        ]
        for part in chunks(rows, 100):
            conn.execute(insert_new(engine, embeddings, part, keys=["text_hash", "model"]))
        _link(conn, engine, links, model, now)


def load_vector(engine: Engine, text_hash: str, model: str) -> np.ndarray | None:
    with engine.connect() as conn:
        blob = conn.execute(
            select(embeddings.c.vector).where(embeddings.c.text_hash == text_hash, embeddings.c.model == model)
        ).scalar_one_or_none()
    return None if blob is None else vector_from_bytes(blob)


@dataclass
class StoredVectorAudit:
    """Rows whose hash is not the hash of their stored text, and rows whose bytes are no unit vector."""

    checked: int = 0
    corrupt_hashes: int = 0
    invalid_vectors: int = 0
    examples: list[str] = field(default_factory=list)
    bad_hashes: dict[str, str] = field(default_factory=dict)  # text_hash -> problem, the first few


def audit_vectors(engine: Engine, *, day: date | None = None, batch: int = 1000) -> StoredVectorAudit:
    """Re-hash stored texts and re-check stored vectors.

    With `day`: the vectors the partition's current links point at (what one materialization certifies).
    Without: the whole table, streamed (for a table-wide check).
    """
    e, pe = embeddings, posting_embeddings
    query = select(e.c.text_hash, e.c.model, e.c.dim, e.c.vector, e.c.text)
    if day is not None:
        linked = (
            select(pe.c.text_hash, pe.c.model)
            .join(postings, postings.c.posting_id == pe.c.posting_id)
            .where(postings.c.partition_date == day, pe.c.is_current.is_(True))
            .distinct()
            .subquery()
        )
        query = query.join(linked, and_(linked.c.text_hash == e.c.text_hash, linked.c.model == e.c.model))
    audit = StoredVectorAudit()
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=batch).execute(query)
        for text_hash, model, dim, blob, text in result:
            audit.checked += 1
            if text is None or content_hash(text) != text_hash:
                audit.corrupt_hashes += 1
                if len(audit.examples) < 5:
                    audit.examples.append(f"corrupt hash {text_hash[:12]}… ({model})")
                    audit.bad_hashes[text_hash] = f"stored text does not match its hash {text_hash[:12]}… ({model})"
            raw = bytes(blob or b"")
            if len(raw) != 4 * int(dim or 0) or not usable_vector(vector_from_bytes(raw)):
                audit.invalid_vectors += 1
                if len(audit.examples) < 5:
                    audit.examples.append(f"invalid vector {text_hash[:12]}… ({model})")
                    audit.bad_hashes.setdefault(text_hash, f"stored vector is not a unit vector {text_hash[:12]}… ({model})")
    return audit


def postings_linked_to(engine: Engine, text_hashes: Iterable[str], day: date, limit: int = 10) -> list[tuple[int, str]]:
    """(posting_id, text_hash) of the partition's postings currently linked to these vectors (check examples)."""
    hashes = list(text_hashes)
    if not hashes:
        return []
    pe = posting_embeddings
    query = (
        select(pe.c.posting_id, pe.c.text_hash)
        .join(postings, postings.c.posting_id == pe.c.posting_id)
        .where(postings.c.partition_date == day, pe.c.is_current.is_(True), pe.c.text_hash.in_(hashes))
        .order_by(pe.c.posting_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(r.posting_id, r.text_hash) for r in conn.execute(query)]
