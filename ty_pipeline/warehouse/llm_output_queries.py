"""What the LLM assets saved for one partition, as the output audits want it."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, Table, select

from ty_pipeline.warehouse.schema import ihl_scores, posting_summaries, postings, skill_keywords


def _partition(table: Table, column: ColumnElement[Any], day: date) -> Select[tuple[Any, Any]]:
    return (
        select(table.c.posting_id, column)
        .select_from(table.join(postings, postings.c.posting_id == table.c.posting_id))
        .where(postings.c.partition_date == day, column.is_not(None))
    )


def saved_summaries(engine: Engine, day: date) -> dict[int, str]:
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(_partition(posting_summaries, posting_summaries.c.summary, day))}


def saved_skill_lists(engine: Engine, day: date) -> dict[int, str]:
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(_partition(skill_keywords, skill_keywords.c.skills_json, day))}


def saved_ihl_scores(engine: Engine, day: date) -> dict[int, tuple[int | None, str | None]]:
    query = _partition(ihl_scores, ihl_scores.c.ihl_score, day).add_columns(ihl_scores.c.ihl_category)
    with engine.connect() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(query)}
