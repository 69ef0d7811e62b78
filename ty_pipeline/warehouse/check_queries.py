"""Set-based queries behind the asset checks: duplicates and per-partition completeness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Engine, func, select

from ty_pipeline.domain.check_report import PostingLabel
from ty_pipeline.domain.description_status import TERMINAL
from ty_pipeline.warehouse.schema import job_descriptions, postings


@dataclass(frozen=True)
class DuplicateGroup:
    source: str
    external_id: str
    title: str | None
    copies: int
    posting_ids: list[int]


@dataclass(frozen=True)
class Duplicates:
    groups: int
    examples: list[DuplicateGroup]


def duplicate_postings(engine: Engine, *, limit: int = 10) -> Duplicates:
    """(source, external_id) pairs held by more than one row: must be none (the replaced system had 230)."""
    query = (
        select(postings.c.source, postings.c.external_id, func.count().label("n"))
        .group_by(postings.c.source, postings.c.external_id)
        .having(func.count() > 1)
        .order_by(func.count().desc(), postings.c.source, postings.c.external_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        examples = []
        for r in rows[:limit]:
            copies = conn.execute(
                select(postings.c.posting_id, postings.c.title)
                .where(postings.c.source == r.source, postings.c.external_id == r.external_id)
                .order_by(postings.c.posting_id)
            ).all()
            examples.append(DuplicateGroup(r.source, r.external_id, copies[0].title, r.n,
                                           [c.posting_id for c in copies]))
    return Duplicates(groups=len(rows), examples=examples)


@dataclass(frozen=True)
class Coverage:
    in_scope: int
    done: int
    missing_examples: list[tuple[int, str]]  # (posting_id, its description status or "no row")

    @property
    def share(self) -> float:
        return 1.0 if self.in_scope == 0 else self.done / self.in_scope


def description_coverage(engine: Engine, day: date, *, limit: int = 10) -> Coverage:
    """Valid postings of the day with a final description outcome (text, partner, gone, gave up)."""
    jd = job_descriptions
    base = (
        select(postings.c.posting_id, jd.c.status)
        .select_from(postings.outerjoin(jd, jd.c.posting_id == postings.c.posting_id))
        .where(postings.c.partition_date == day, postings.c.invalidated.is_(False))
    )
    with engine.connect() as conn:
        rows = conn.execute(base).all()
    terminal = {str(s) for s in TERMINAL}
    missing = [(r.posting_id, r.status or "no row") for r in rows if r.status not in terminal]
    return Coverage(in_scope=len(rows), done=len(rows) - len(missing), missing_examples=missing[:limit])


def posting_labels(engine: Engine, posting_ids: Sequence[int]) -> dict[int, PostingLabel]:
    """Source, external id and title of a few postings (a failing check's examples), by posting id."""
    ids = list(dict.fromkeys(posting_ids))
    if not ids:
        return {}
    p = postings.c
    query = select(p.posting_id, p.source, p.external_id, p.title).where(p.posting_id.in_(ids))
    with engine.connect() as conn:
        return {r.posting_id: PostingLabel(r.posting_id, r.source, r.external_id, r.title) for r in conn.execute(query)}
