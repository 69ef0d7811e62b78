"""Reads and writes of `job_descriptions`: what still needs a description, and each outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, case, func, or_, select

from ty_pipeline.domain.description_status import MAX_DESCRIPTION_ATTEMPTS, DescriptionStatus
from ty_pipeline.domain.invalidation import InvalidationReason
from ty_pipeline.domain.text_clean import strip_unstorable
from ty_pipeline.domain.urls import redact_urls_in
from ty_pipeline.warehouse.postings_store import invalidate_posting
from ty_pipeline.warehouse.schema import job_descriptions, postings
from ty_pipeline.warehouse.upsert import upsert


@dataclass(frozen=True)
class PendingDescription:
    posting_id: int
    source: str
    external_id: str
    origin: str
    partner_url: str | None
    attempts: int
    recheck: bool = False  # a held "gone" posting listed again (warehouse/rechecks_store.py)


def pending_descriptions(engine: Engine, partition_date: date, limit: int | None = None) -> list[PendingDescription]:
    """Valid postings of the partition without a final description outcome, newest first.

    Newest first because half of all postings are gone within four days (docs/domain_rules.md §1.2).
    """
    jd = job_descriptions
    query = (
        pending_query()
        .where(
            postings.c.partition_date == partition_date,
            postings.c.invalidated.is_(False),
            or_(
                jd.c.posting_id.is_(None),
                and_(jd.c.status == str(DescriptionStatus.FAILED), jd.c.attempts < MAX_DESCRIPTION_ATTEMPTS),
            ),
        )
        # NULLS LAST spelt out: PostgreSQL sorts NULL first in DESC, SQLite last, and an undated
        # Deutsche Bank posting (domain/undated.py) must be picked alike on both when a limit applies.
        .order_by(postings.c.published_date.desc().nulls_last(), postings.c.posting_id.desc())
    )
    if limit:
        query = query.limit(limit)
    return read_pending(engine, query)


def pending_query() -> Select[Any]:
    """Postings with their description row, if any: the columns a `PendingDescription` is read from.
    Callers add which postings (`where`), their order and limit."""
    jd = job_descriptions
    return select(
        postings.c.posting_id, postings.c.source, postings.c.external_id, postings.c.origin,
        postings.c.partner_url, jd.c.attempts,
    ).select_from(postings.outerjoin(jd, jd.c.posting_id == postings.c.posting_id))


def read_pending(engine: Engine, query: Select[Any], *, recheck: bool = False) -> list[PendingDescription]:
    """The rows of a `pending_query` as work items (no description row yet = 0 attempts)."""
    with engine.connect() as conn:
        return [
            PendingDescription(r.posting_id, r.source, r.external_id, r.origin, r.partner_url, r.attempts or 0,
                               recheck=recheck)
            for r in conn.execute(query)
        ]


@dataclass(frozen=True)
class DescriptionOutcome:
    status: DescriptionStatus
    description: str | None = None
    partner_url: str | None = None
    http_status: int | None = None
    error: str | None = None


def save_description(engine: Engine, pending: PendingDescription, outcome: DescriptionOutcome, now: datetime) -> None:
    """Write one outcome (own transaction, so a crash later loses nothing already fetched)."""
    row = {
        "posting_id": pending.posting_id,
        "status": str(outcome.status),
        "description": outcome.description,
        "partner_url": outcome.partner_url,
        "attempts": pending.attempts + 1,
        "http_status": outcome.http_status,
        "last_error": outcome.error,
        "fetched_at": now,
    }
    stmt = upsert(engine, job_descriptions, row, keys=["posting_id"])
    with engine.begin() as conn:
        conn.execute(stmt)
        if outcome.status == DescriptionStatus.NOT_FOUND:
            invalidate_posting(conn, pending.posting_id, InvalidationReason.NOT_FOUND_AT_SOURCE, now)


def save_description_or_unstorable(
    engine: Engine, pending: PendingDescription, outcome: DescriptionOutcome, now: datetime
) -> DescriptionOutcome:
    """Save `outcome`; if the warehouse refuses it, save the final status `unstorable` with the reason.

    Returns the outcome actually stored. Only if even the bare status cannot be written (the database
    itself is failing) does the error propagate.
    """
    try:
        save_description(engine, pending, outcome, now)
        return outcome
    except Exception as exc:  # noqa: BLE001 - any refusal of this row's values
        first_line = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = strip_unstorable(redact_urls_in(first_line))[:400]
        fallback = DescriptionOutcome(
            DescriptionStatus.UNSTORABLE,
            http_status=outcome.http_status,
            error=f"could not store the fetched description ({outcome.status}): {reason}",
        )
        save_description(engine, pending, fallback, now)
        return fallback


@dataclass(frozen=True)
class DescriptionCoverage:
    """The partition's valid postings by what their description is (not only this run's)."""

    postings: int
    ok: int
    too_short: int
    without_text: int  # external partner, gave up, unstorable, failed (retried) or not fetched yet

    @property
    def share(self) -> float:
        """Valid postings with a full description, 0..1 (0 for a day without postings)."""
        return round(self.ok / self.postings, 4) if self.postings else 0.0


def description_coverage(engine: Engine, partition_date: date) -> DescriptionCoverage:
    """One query: valid postings of the day and how many have a full or a short description."""
    p, jd = postings.c, job_descriptions.c

    def count(status: DescriptionStatus) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((jd.status == str(status), 1), else_=0)), 0)

    query = (
        select(func.count(), count(DescriptionStatus.OK), count(DescriptionStatus.TOO_SHORT))
        .select_from(postings.outerjoin(job_descriptions, jd.posting_id == p.posting_id))
        .where(p.partition_date == partition_date, p.invalidated.is_(False))
    )
    with engine.connect() as conn:
        total, ok, short = conn.execute(query).one()
    return DescriptionCoverage(int(total), int(ok), int(short), int(total) - int(ok) - int(short))
