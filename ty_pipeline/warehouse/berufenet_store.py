"""Reads and writes of the profession tables: catalog, alias index, learned aliases, failed titles,
per-posting mappings and profession similarity.

Every write is an upsert or a replace inside one transaction, so a re-run never duplicates and a reader
never sees half a catalog. `IN (...)` lookups are chunked to stay far below the bind-parameter limits of
SQLite (32,766) and psycopg2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar, cast

import numpy as np
from sqlalchemy import Connection, Engine, and_, bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ty_pipeline.domain.berufenet_status import RESOLVED, SETTLED_FAILURES, UNRESOLVED, BerufenetStatus
from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.failed_titles import (
    is_legacy_key,
    key_choices,
    legacy_partition_key,
    partition_key_for,
)
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.profession_matching import Candidate
from ty_pipeline.domain.profession_records import CatalogSnapshot, KnownFailure, LearnedAlias, PostingTitle
from ty_pipeline.warehouse.embeddings_store import vector_from_bytes, vector_to_bytes
from ty_pipeline.warehouse.schema import (
    berufenet_aliases,
    berufenet_catalog,
    berufenet_failed_titles,
    berufenet_learned_aliases,
    berufenet_mappings,
    embeddings,
    job_descriptions,
    postings,
    profession_similarity,
)
from ty_pipeline.warehouse.upsert import chunks, insert_new, upsert

_IN_CHUNK = 500
_WRITE_CHUNK = 1000
_TEXT_STATUSES = (str(DescriptionStatus.OK), str(DescriptionStatus.TOO_SHORT))
MIN_CONTEXT_CHARS = 50  # shorter descriptions say nothing the title does not (docs/domain_rules.md §6.3)


R = TypeVar("R")


def _within(engine: Engine, conn: Connection | None, write: Callable[[Connection], R]) -> R:
    """Run `write` in the caller's transaction when one is given (several stores committing together),
    else in a transaction of its own."""
    if conn is not None:
        return write(conn)
    with engine.begin() as own:
        return write(own)


# -- catalog ------------------------------------------------------------------------------------------------


def replace_catalog(
    engine: Engine, rows: Sequence[Mapping[str, Any]], alias_index: Mapping[str, Sequence[str]], now: datetime
) -> None:
    """Swap catalog and alias index in one transaction: readers see the old or the new one, never a mix."""
    catalog_rows = [{**row, "updated_at": now} for row in rows]
    alias_rows = [{"alias_key": key, "profession_id": pid} for key, ids in alias_index.items() for pid in ids]
    with engine.begin() as conn:
        conn.execute(delete(berufenet_aliases))
        conn.execute(delete(berufenet_catalog))
        for part in chunks(catalog_rows, _WRITE_CHUNK):
            conn.execute(berufenet_catalog.insert(), list(part))
        for part in chunks(alias_rows, 5000):
            conn.execute(berufenet_aliases.insert(), list(part))


@dataclass(frozen=True)
class StoredCatalog:
    snapshot: CatalogSnapshot
    embed_texts: dict[str, str]  # embed_hash -> text
    embed_hash_of: dict[str, str]  # profession_id -> embed_hash
    sources: dict[str, str]  # profession_id -> source

    @property
    def empty(self) -> bool:
        return len(self.snapshot) == 0


def load_catalog(engine: Engine) -> StoredCatalog:
    c = berufenet_catalog.c
    query = select(c.profession_id, c.name, c.kldb, c.qualification_level, c.domain_code, c.source, c.embed_text,
                   c.embed_hash).order_by(c.profession_id)
    profs: list[NamedProfession] = []
    texts: dict[str, str] = {}
    hashes: dict[str, str] = {}
    sources: dict[str, str] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            profs.append(NamedProfession(r.profession_id, r.name, r.kldb, int(r.qualification_level), r.domain_code))
            texts[r.embed_hash] = r.embed_text
            hashes[r.profession_id] = r.embed_hash
            sources[r.profession_id] = r.source
    return StoredCatalog(CatalogSnapshot.from_professions(profs), texts, hashes, sources)


def aliases_for_keys(engine: Engine, keys: Sequence[str]) -> dict[str, list[str]]:
    """Alias key -> profession ids, for the given keys only (one query per 500 keys)."""
    out: dict[str, list[str]] = {}
    a = berufenet_aliases.c
    wanted = sorted(set(keys))
    with engine.connect() as conn:
        for part in chunks(wanted, _IN_CHUNK):
            for key, pid in conn.execute(select(a.alias_key, a.profession_id).where(a.alias_key.in_(part))):
                out.setdefault(key, []).append(pid)
    return {k: sorted(v) for k, v in out.items()}


def load_name_vectors(engine: Engine, model: str) -> dict[str, np.ndarray]:
    """embed_hash -> vector for every catalog name that has one for `model`."""
    c, e = berufenet_catalog.c, embeddings.c
    query = (
        select(e.text_hash, e.vector)
        .where(e.model == model, e.text_hash.in_(select(c.embed_hash).distinct().scalar_subquery()))
    )
    with engine.connect() as conn:
        return {h: vector_from_bytes(blob) for h, blob in conn.execute(query)}


def name_hashes_with_vectors(engine: Engine, model: str) -> set[str]:
    """Which catalog names already have a vector for `model` (hashes only: no vector is read)."""
    c, e = berufenet_catalog.c, embeddings.c
    query = select(e.text_hash).where(e.model == model, e.text_hash.in_(select(c.embed_hash).distinct().scalar_subquery()))
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def save_name_vectors(engine: Engine, model: str, vectors: Sequence[tuple[str, str, np.ndarray]], now: datetime) -> None:
    """Store catalog-name vectors (hash, text, vector) in the shared `embeddings` table.

    Same rows and the same "first writer wins" rule as `embeddings_store.save_vectors`. The caller only
    passes hashes it found missing, so a plain batched INSERT is tried first: SQLAlchemy batches it into
    multi-row statements (20,000 names in about a second), whereas an ON CONFLICT executemany goes row by
    row on psycopg2 (five times slower). Only if another run stored some of the same names meanwhile does
    the write fall back to ON CONFLICT DO NOTHING.
    """
    if not vectors:
        return
    rows = [
        {"text_hash": h, "model": model, "dim": int(v.shape[0]), "vector": vector_to_bytes(v), "text": name,
         "created_at": now}
        for h, name, v in vectors
    ]
    try:
        with engine.begin() as conn:
            conn.execute(embeddings.insert(), rows)
    except IntegrityError:
        with engine.begin() as conn:
            for part in chunks(rows, 500):
                conn.execute(insert_new(engine, embeddings, part, keys=["text_hash", "model"]))


# -- learned aliases ----------------------------------------------------------------------------------------


def learned_for_keys(engine: Engine, keys: Sequence[str]) -> dict[str, LearnedAlias]:
    la = berufenet_learned_aliases.c
    out: dict[str, LearnedAlias] = {}
    with engine.connect() as conn:
        for part in chunks(sorted(set(keys)), _IN_CHUNK):
            for r in conn.execute(
                select(la.title_key, la.profession_id, la.status, la.score).where(la.title_key.in_(part))
            ):
                out[r.title_key] = LearnedAlias(r.title_key, r.profession_id, r.status, r.score)
    return out


def save_learned(engine: Engine, rows: Sequence[Mapping[str, Any]], now: datetime, conn: Connection | None = None) -> None:
    """Upsert learned aliases: {title_key, title, profession_id, status, score, model}."""
    if not rows:
        return
    values = [{**r, "created_at": now, "updated_at": now} for r in rows]

    def write(c: Connection) -> None:
        for part in chunks(values, _WRITE_CHUNK):
            c.execute(upsert(
                engine, berufenet_learned_aliases, part, keys=["title_key"],
                update=["title", "profession_id", "status", "score", "model", "updated_at"],
            ))

    _within(engine, conn, write)


# -- failed titles ------------------------------------------------------------------------------------------


def candidates_json(candidates: Sequence[Candidate]) -> str:
    return json.dumps([{"profession_id": c.profession_id, "score": round(c.score, 5)} for c in candidates])


def candidates_from_json(text: str | None) -> list[Candidate]:
    if not text:
        return []
    return [Candidate(str(item["profession_id"]), float(item["score"])) for item in json.loads(text)]


def known_failures(engine: Engine, keys: Sequence[str], fingerprint: str) -> dict[str, KnownFailure]:
    """Settled failures recorded under the same settings fingerprint (and not resolved since)."""
    ft = berufenet_failed_titles.c
    out: dict[str, KnownFailure] = {}
    settled = [str(s) for s in SETTLED_FAILURES]
    with engine.connect() as conn:
        for part in chunks(sorted(set(keys)), _IN_CHUNK):
            query = select(ft.title_key, ft.status, ft.score, ft.candidates_json).where(
                ft.title_key.in_(part), ft.fingerprint == fingerprint, ft.resolved.is_(False), ft.status.in_(settled)
            )
            for r in conn.execute(query):
                out[r.title_key] = KnownFailure(
                    r.title_key, BerufenetStatus(r.status), r.score, tuple(candidates_from_json(r.candidates_json))
                )
    return out


def upsert_failed_titles(engine: Engine, rows: Sequence[Mapping[str, Any]], now: datetime, conn: Connection | None = None) -> None:
    """Record unresolved titles: {title_key, title, status, score, candidates_json, fingerprint}.

    Insert order is the caller's order, so rows inserted together get `seq` in that order (the sensor
    registers partitions in `seq` order: most frequent title first within a run).
    """
    if not rows:
        return

    def write(c: Connection) -> None:
        keys = _choose_partition_keys(c, rows)
        values = [
            {**r, "partition_key": keys[r["title_key"]], "resolved": False, "first_failed_at": now, "updated_at": now}
            for r in rows
        ]
        for row in values:  # one by one: keeps `seq` in the caller's order on both backends
            c.execute(upsert(
                engine, berufenet_failed_titles, row, keys=["title_key"],
                update=["status", "score", "candidates_json", "fingerprint", "error", "updated_at"],
                extra_set={"resolved": False, "resolved_profession_id": None},
            ))

    _within(engine, conn, write)


def _choose_partition_keys(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """title_key -> partition key: the stored one for a title recorded before (a key never changes, Dagster
    has it registered), else the readable title, disambiguated only when another title holds it."""
    ft = berufenet_failed_titles.c
    title_keys = list(dict.fromkeys(r["title_key"] for r in rows))
    out: dict[str, str] = {}
    for part in chunks(title_keys, _IN_CHUNK):
        out.update(conn.execute(select(ft.title_key, ft.partition_key).where(ft.title_key.in_(part))).tuples().all())
    new = {r["title_key"]: r["title"] for r in rows if r["title_key"] not in out}
    if not new:
        return out
    # Every key a new title could get, so one query per chunk finds those held by other titles.
    wanted = sorted({k for tk, title in new.items() for k in key_choices(title, tk)})
    taken: set[str] = set()
    for part in chunks(wanted, _IN_CHUNK):
        taken.update(conn.execute(select(ft.partition_key).where(ft.partition_key.in_(part))).scalars().all())
    for tk, title in new.items():
        key = partition_key_for(title, tk, taken)
        taken.add(key)  # two new titles of one batch with the same readable form
        out[tk] = key
    return out


def mark_resolved(engine: Engine, resolved: Mapping[str, str], now: datetime, conn: Connection | None = None) -> int:
    """Failed titles that got a profession since (title_key -> profession_id)."""
    if not resolved:
        return 0
    ft = berufenet_failed_titles.c
    stmt = (
        update(berufenet_failed_titles)
        .where(ft.title_key == bindparam("key"), ft.resolved.is_(False))
        .values(resolved=True, resolved_profession_id=bindparam("pid"), error=None, updated_at=now)
    )
    params = [{"key": k, "pid": pid} for k, pid in resolved.items()]

    def write(c: Connection) -> int:
        return max(c.execute(stmt, params).rowcount, 0)

    return _within(engine, conn, write)


def refresh_posting_counts(engine: Engine, keys: Sequence[str]) -> None:
    """posting_count of failed titles = postings (all partitions) currently mapped under that title."""
    ft, bm = berufenet_failed_titles.c, berufenet_mappings.c
    with engine.begin() as conn:
        for part in chunks(sorted(set(keys)), _IN_CHUNK):
            counts = conn.execute(
                select(bm.title_key, func.count()).where(bm.title_key.in_(part)).group_by(bm.title_key)
            ).all()
            if counts:
                conn.execute(
                    update(berufenet_failed_titles)
                    .where(ft.title_key == bindparam("key"))
                    .values(posting_count=bindparam("n")),
                    [{"key": k, "n": n} for k, n in counts],
                )


@dataclass(frozen=True)
class FailedTitle:
    seq: int
    partition_key: str
    title_key: str
    title: str
    status: str
    score: float | None
    candidates: list[Candidate]
    posting_count: int
    resolved: bool
    resolved_profession_id: str | None
    error: str | None


def _failed(row: Any) -> FailedTitle:
    return FailedTitle(
        seq=row.seq, partition_key=row.partition_key, title_key=row.title_key, title=row.title, status=row.status,
        score=row.score, candidates=candidates_from_json(row.candidates_json), posting_count=row.posting_count,
        resolved=bool(row.resolved), resolved_profession_id=row.resolved_profession_id, error=row.error,
    )


def failed_title(engine: Engine, partition_key: str) -> FailedTitle | None:
    """The failed title registered under this key; a key of the previous scheme (a backfill queued before the
    warehouse was migrated) still finds its title."""
    ft = berufenet_failed_titles
    with engine.connect() as conn:
        row = conn.execute(select(ft).where(ft.c.partition_key == partition_key)).one_or_none()
    if row is None and is_legacy_key(partition_key):
        current = legacy_key_replacements(engine, [partition_key]).get(partition_key)
        return None if current is None else failed_title(engine, current.partition_key)
    return None if row is None else _failed(row)


@dataclass(frozen=True)
class KeyReplacement:
    partition_key: str
    resolved: bool


def legacy_key_replacements(engine: Engine, legacy_keys: Iterable[str]) -> dict[str, KeyReplacement]:
    """Keys of the previous scheme -> the title's current key (and whether it is resolved).

    The old key was a hash of the title key, so it is recomputed for every stored title: a scan of the table,
    done only while Dagster still has old keys registered (once, after the upgrade).
    """
    wanted = set(legacy_keys)
    if not wanted:
        return {}
    ft = berufenet_failed_titles.c
    out: dict[str, KeyReplacement] = {}
    with engine.connect() as conn:
        for title_key, key, resolved in conn.execute(select(ft.title_key, ft.partition_key, ft.resolved)):
            old = legacy_partition_key(title_key)
            if old in wanted:
                out[old] = KeyReplacement(key, bool(resolved))
    return out


def failed_titles_after(engine: Engine, seq: int, limit: int) -> list[FailedTitle]:
    """Failed titles recorded after `seq`, in `seq` order (the sensor's cursor)."""
    ft = berufenet_failed_titles
    with engine.connect() as conn:
        rows = conn.execute(select(ft).where(ft.c.seq > seq).order_by(ft.c.seq).limit(limit)).all()
    return [_failed(r) for r in rows]


def partition_keys_in(engine: Engine, partition_keys: Iterable[str]) -> list[str]:
    """Which of these partition keys are stored (the others are stale registrations)."""
    ft = berufenet_failed_titles.c
    out: list[str] = []
    with engine.connect() as conn:
        for part in chunks(sorted(set(partition_keys)), _IN_CHUNK):
            out += conn.execute(select(ft.partition_key).where(ft.partition_key.in_(part))).scalars().all()
    return out


def resolved_partition_keys(engine: Engine, partition_keys: Iterable[str]) -> list[str]:
    """Which of these partition keys belong to titles that are resolved by now."""
    ft = berufenet_failed_titles.c
    out: list[str] = []
    with engine.connect() as conn:
        for part in chunks(sorted(set(partition_keys)), _IN_CHUNK):
            out += conn.execute(
                select(ft.partition_key).where(ft.partition_key.in_(part), ft.resolved.is_(True))
            ).scalars().all()
    return out


def partition_keys_of(engine: Engine, title_keys: Sequence[str]) -> dict[str, str]:
    """title_key -> stored partition key, for the titles recorded as failed."""
    ft = berufenet_failed_titles.c
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for part in chunks(sorted(set(title_keys)), _IN_CHUNK):
            out.update(conn.execute(select(ft.title_key, ft.partition_key).where(ft.title_key.in_(part))).tuples().all())
    return out


@dataclass(frozen=True)
class OpenFailedTitle:
    partition_key: str
    title: str
    status: str
    posting_count: int
    error: str | None


def open_failed_titles(engine: Engine, limit: int) -> tuple[list[OpenFailedTitle], int]:
    """The unresolved failed titles with most postings first (ties by first failure), and how many there are."""
    ft = berufenet_failed_titles.c
    query = (
        select(ft.partition_key, ft.title, ft.status, ft.posting_count, ft.error)
        .where(ft.resolved.is_(False))
        .order_by(ft.posting_count.desc(), ft.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [OpenFailedTitle(*r) for r in conn.execute(query)]
        total = int(conn.execute(select(func.count()).where(ft.resolved.is_(False))).scalar_one())
    return rows, total


def set_title_error(engine: Engine, partition_key: str, error: str, now: datetime) -> None:
    ft = berufenet_failed_titles
    with engine.begin() as conn:
        conn.execute(update(ft).where(ft.c.partition_key == partition_key).values(error=error, updated_at=now))


# -- per-posting mappings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionPosting:
    posting: PostingTitle
    mapped_key: str | None
    mapped_status: str | None
    mapped_profession: str | None


def load_partition_postings(engine: Engine, day: date) -> list[PartitionPosting]:
    """The partition's valid postings with their current mapping row, if any."""
    p, bm = postings.c, berufenet_mappings.c
    query = (
        select(p.posting_id, p.title, p.beruf, p.city, bm.title_key, bm.status, bm.berufenet_id)
        .select_from(postings.outerjoin(berufenet_mappings, bm.posting_id == p.posting_id))
        .where(p.partition_date == day, p.invalidated.is_(False))
        .order_by(p.posting_id)
    )
    with engine.connect() as conn:
        return [
            PartitionPosting(PostingTitle(r.posting_id, r.title, r.beruf, r.city), r.title_key, r.status,
                             r.berufenet_id)
            for r in conn.execute(query)
        ]


@dataclass(frozen=True)
class MappingCoverage:
    postings: int  # valid postings of the partition
    resolved: int  # of these, mapped to a profession

    @property
    def share(self) -> float:
        return round(self.resolved / self.postings, 4) if self.postings else 0.0


def partition_mapping_coverage(engine: Engine, day: date) -> MappingCoverage:
    """How many valid postings of the partition have a profession (one query)."""
    p, bm = postings.c, berufenet_mappings.c
    resolved = func.sum(case((bm.status.in_([str(s) for s in RESOLVED]), 1), else_=0))
    query = (
        select(func.count(), resolved)
        .select_from(postings.outerjoin(berufenet_mappings, bm.posting_id == p.posting_id))
        .where(p.partition_date == day, p.invalidated.is_(False))
    )
    with engine.connect() as conn:
        total, done = conn.execute(query).one()
    return MappingCoverage(int(total), int(done or 0))


def unmapped_postings(engine: Engine, day: date) -> int:
    """Valid postings of the partition without a mapping row (the check's count, computed in SQL)."""
    p, bm = postings.c, berufenet_mappings.c
    query = (
        select(func.count())
        .select_from(postings.outerjoin(berufenet_mappings, bm.posting_id == p.posting_id))
        .where(p.partition_date == day, p.invalidated.is_(False), bm.posting_id.is_(None))
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def unmapped_posting_ids(engine: Engine, day: date, limit: int = 10) -> list[int]:
    """The first valid postings of the partition without a mapping row (a failing check's examples)."""
    p, bm = postings.c, berufenet_mappings.c
    query = (
        select(p.posting_id)
        .select_from(postings.outerjoin(berufenet_mappings, bm.posting_id == p.posting_id))
        .where(p.partition_date == day, p.invalidated.is_(False), bm.posting_id.is_(None))
        .order_by(p.posting_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


def mapping_row(
    posting_id: int, title_key: str | None, status: str, profession: NamedProfession | None, score: float | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "posting_id": posting_id,
        "title_key": title_key or None,
        "status": status,
        "berufenet_id": profession.profession_id if profession else None,
        "berufenet_name": profession.name if profession else None,
        "kldb": profession.kldb if profession else None,
        "qualification_level": profession.qualification_level if profession else None,
        "score": None if score is None else float(score),
        "updated_at": now,
    }


def save_mappings(engine: Engine, rows: Sequence[Mapping[str, Any]], conn: Connection | None = None) -> None:
    if not rows:
        return

    def write(c: Connection) -> None:
        for part in chunks(list(rows), _WRITE_CHUNK):
            c.execute(upsert(
                engine, berufenet_mappings, part, keys=["posting_id"],
                update=["title_key", "status", "berufenet_id", "berufenet_name", "kldb", "qualification_level",
                        "score", "updated_at"],
            ))

    _within(engine, conn, write)


def resolve_title_everywhere(
    engine: Engine, title_key: str, title: str, profession: NamedProfession, status: str, score: float | None,
    model: str, now: datetime, *, learn: bool = True,
) -> int:
    """A failed title got its profession: every unresolved posting with that title (any partition), the
    learned alias store (unless it is already there) and the failed-title row, in one transaction.
    Returns the postings updated."""
    bm = berufenet_mappings.c
    with engine.begin() as conn:
        updated = conn.execute(
            update(berufenet_mappings)
            .where(bm.title_key == title_key, bm.status.in_([str(s) for s in UNRESOLVED]))
            .values(
                status=status, berufenet_id=profession.profession_id, berufenet_name=profession.name,
                kldb=profession.kldb, qualification_level=profession.qualification_level, score=score,
                updated_at=now,
            )
        ).rowcount
        if learn:
            save_learned(
                engine,
                [{"title_key": title_key, "title": title, "profession_id": profession.profession_id,
                  "status": status, "score": score, "model": model}],
                now, conn=conn,
            )
        mark_resolved(engine, {title_key: profession.profession_id}, now, conn=conn)
    return max(int(updated or 0), 0)


def description_for_title(engine: Engine, title_key: str) -> str | None:
    """The longest description among the postings mapped under this title (most context for the LLM)."""
    bm, jd = berufenet_mappings.c, job_descriptions.c
    query = (
        select(jd.description)
        .select_from(berufenet_mappings.join(job_descriptions, jd.posting_id == bm.posting_id))
        .where(bm.title_key == title_key, jd.status.in_(_TEXT_STATUSES), jd.description.isnot(None),
               func.length(jd.description) > MIN_CONTEXT_CHARS)
        .order_by(func.length(jd.description).desc(), jd.posting_id)
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def postings_with_title(engine: Engine, title_key: str) -> dict[str, int]:
    """status -> postings mapped under this title (all partitions)."""
    bm = berufenet_mappings.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(bm.status, func.count()).where(bm.title_key == title_key).group_by(bm.status)
        ).all()
    return {status: int(n) for status, n in rows}


# -- profession similarity ----------------------------------------------------------------------------------


def replace_similarity(engine: Engine, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
    values = [{**r, "computed_at": now} for r in rows]
    with engine.begin() as conn:
        conn.execute(delete(profession_similarity))
        for part in chunks(values, 5000):
            conn.execute(profession_similarity.insert(), list(part))


def similarity_rows(engine: Engine) -> tuple[list[tuple[str, str, int, float]], set[str]]:
    """The stored similarity pairs and the catalog's profession ids, for the consistency check."""
    ps = profession_similarity.c
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(select(ps.profession_id, ps.similar_id, ps.rank, ps.score))]
        ids = set(conn.execute(select(berufenet_catalog.c.profession_id)).scalars())
    # The four columns' types (text, text, integer, real); the driver returns them as such.
    return cast(list[tuple[str, str, int, float]], rows), ids


def catalog_names(engine: Engine, profession_ids: Sequence[str]) -> dict[str, str]:
    """profession id -> name, for the few ids a failing check names."""
    ids = list(dict.fromkeys(profession_ids))
    if not ids:
        return {}
    c = berufenet_catalog.c
    with engine.connect() as conn:
        return {pid: name for pid, name in conn.execute(select(c.profession_id, c.name).where(c.profession_id.in_(ids)))}


def mapped_posting_counts(engine: Engine) -> dict[str, int]:
    """profession_id -> valid postings mapped to it (all partitions)."""
    bm, p = berufenet_mappings.c, postings.c
    query = (
        select(bm.berufenet_id, func.count())
        .select_from(berufenet_mappings.join(postings, and_(p.posting_id == bm.posting_id, p.invalidated.is_(False))))
        .where(bm.berufenet_id.isnot(None))
        .group_by(bm.berufenet_id)
    )
    with engine.connect() as conn:
        return {pid: int(n) for pid, n in conn.execute(query)}


def catalog_counts_by_source(engine: Engine) -> dict[str, int]:
    """Stored catalog entries per source (kldb, kldb_occupation, seed, berufenet)."""
    c = berufenet_catalog.c
    with engine.connect() as conn:
        return {str(src): int(n) for src, n in conn.execute(select(c.source, func.count()).group_by(c.source))}
