"""Reads and writes of the LLM result tables: `posting_summaries`, `skill_keywords` (+ items), `ihl_scores`.

One posting per transaction, upserted on `posting_id`: a run killed halfway keeps every result it saved.
Reader-facing values (summary, skill list, score) are written only by a success; a failure row carries
its error and NULL in those columns, and clears whatever an earlier success of an older input left.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, Table, delete, select

from ty_pipeline.domain.llm_selection import Candidate
from ty_pipeline.warehouse.schema import (
    ihl_scores,
    job_descriptions,
    posting_summaries,
    postings,
    skill_keyword_items,
    skill_keywords,
)
from ty_pipeline.warehouse.upsert import upsert

# Columns of each table a failure must leave NULL (the contract: never a fake value).
READER_COLUMNS: dict[str, tuple[str, ...]] = {
    "posting_summaries": ("summary",),
    "skill_keywords": ("skills_json",),
    "ihl_scores": (
        "ihl_score", "ihl_category", "ihl_verdict", "verdict_disagrees", "confidence", "recommendation",
        "candidate_pool_estimate", "red_flags_json",
    ),
}
RESULT_TABLES: dict[str, Table] = {t.name: t for t in (posting_summaries, skill_keywords, ihl_scores)}


def load_candidates(engine: Engine, table: Table, day: date, sources: Sequence[str]) -> list[Candidate]:
    """Valid postings of the partition from `sources`, newest first, with description and saved row."""
    jd = job_descriptions
    query = (
        select(
            postings.c.posting_id, postings.c.source, postings.c.external_id, postings.c.title,
            postings.c.employer, postings.c.city, postings.c.state, postings.c.country,
            postings.c.published_date, jd.c.description, table.c.status, table.c.input_hash, table.c.attempts,
        )
        .select_from(
            postings.outerjoin(jd, jd.c.posting_id == postings.c.posting_id).outerjoin(
                table, table.c.posting_id == postings.c.posting_id
            )
        )
        .where(
            postings.c.partition_date == day,
            postings.c.invalidated.is_(False),
            postings.c.source.in_(list(sources)),
        )
        .order_by(postings.c.published_date.desc().nulls_last(), postings.c.posting_id.desc())
    )
    with engine.connect() as conn:
        return [
            Candidate(
                posting_id=r.posting_id, source=r.source, external_id=r.external_id, title=r.title,
                employer=r.employer, city=r.city, state=r.state, country=r.country,
                published_date=r.published_date, description=r.description, saved_status=r.status,
                saved_hash=r.input_hash, saved_attempts=r.attempts or 0,
            )
            for r in conn.execute(query)
        ]


def save_result(
    engine: Engine,
    table: Table,
    *,
    posting_id: int,
    status: str,
    input_hash: str,
    attempts: int,
    error: str | None,
    values: dict[str, Any],
    success: bool,
    now: datetime,
    skill_items: Sequence[dict[str, Any]] = (),
) -> None:
    """Upsert one posting's row (and, for skills, replace its item rows) in one transaction."""
    known = {c.name for c in table.columns}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}")
    row: dict[str, Any] = {c: None for c in READER_COLUMNS[table.name]}
    row.update({k: v for k, v in values.items() if success or k not in READER_COLUMNS[table.name]})
    row.update(
        posting_id=posting_id, status=status, input_hash=input_hash, attempts=attempts, error=error, updated_at=now
    )
    with engine.begin() as conn:
        conn.execute(upsert(conn, table, row, keys=["posting_id"]))
        if table is skill_keywords:
            conn.execute(delete(skill_keyword_items).where(skill_keyword_items.c.posting_id == posting_id))
            if success and skill_items:
                conn.execute(
                    skill_keyword_items.insert(),
                    [{"posting_id": posting_id, **item} for item in skill_items],
                )


def saved_statuses(engine: Engine, table: Table, day: date) -> list[dict[str, Any]]:
    """Id, status, attempts and error of every saved row of the partition: what the run's metadata and
    check need, without the result columns (a 16,000-posting day of summaries and IHL details is
    hundreds of MB as full rows)."""
    query = (
        select(table.c.posting_id, table.c.status, table.c.attempts, table.c.error)
        .select_from(table.join(postings, postings.c.posting_id == table.c.posting_id))
        .where(postings.c.partition_date == day)
        .order_by(table.c.posting_id)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def saved_rows(engine: Engine, table: Table, day: date) -> list[dict[str, Any]]:
    """Every saved row of the partition (for tests, checks and metadata)."""
    query = (
        select(table)
        .select_from(table.join(postings, postings.c.posting_id == table.c.posting_id))
        .where(postings.c.partition_date == day)
        .order_by(table.c.posting_id)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
