"""Indexes: an old warehouse gets the ones added since; the demand and status queries have theirs."""

from __future__ import annotations

import sqlalchemy as sa

from ty_pipeline.domain.status_registry import ASSETS
from ty_pipeline.warehouse.engine import dispose_engine, ensure_schema, get_engine


def _indexes(engine: sa.Engine, table: str) -> set[str]:
    return {ix["name"] for ix in sa.inspect(engine).get_indexes(table)}


def test_ensure_schema_adds_indexes_missing_from_a_warehouse_made_before_migrations(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    assert "ix_postings_active" in _indexes(engine, "postings")
    # A warehouse from before the index (and before Alembic): the table and its rows exist, the index does
    # not. Later indexes come with their own revision (ty_pipeline/warehouse/migrations/versions/).
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DROP INDEX ix_postings_active"))
        conn.execute(sa.text(
            "INSERT INTO postings (source, external_id, partition_date, first_seen_at, last_seen_at, invalidated) "
            "VALUES ('dbank', 'old-1', '2026-11-01', '2026-11-01 02:00:00', '2026-11-01 02:00:00', false)"
        ))
    dispose_engine(warehouse_url)  # a new process: ensure_schema runs again
    engine = get_engine(warehouse_url)
    assert "ix_postings_active" not in _indexes(engine, "postings")

    ensure_schema(engine)
    assert "ix_postings_active" in _indexes(engine, "postings")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM postings")).scalar_one() == 1
    dispose_engine(warehouse_url)
    ensure_schema(get_engine(warehouse_url))  # and a third start finds it and changes nothing


def test_the_active_index_covers_the_snapshot_scan_on_postgresql(pg_schema_url: str) -> None:
    """On PostgreSQL the index carries state and id, so the active postings need no heap row."""
    engine = get_engine(pg_schema_url)
    ensure_schema(engine)
    (ix,) = [ix for ix in sa.inspect(engine).get_indexes("postings") if ix["name"] == "ix_postings_active"]
    assert ix["column_names"][:3] == ["partition_date", "invalidated", "invalidated_at"]
    assert ix.get("include_columns") == ["state", "posting_id"]


def test_every_time_column_the_status_cli_filters_by_leads_an_index(warehouse_url: str) -> None:
    """`ty-pipeline status` counts recent work per asset by a time column; each must be indexed."""
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    inspector = sa.inspect(engine)
    missing = []
    for spec in ASSETS.values():
        leading = {tuple(ix["column_names"][:1]) for ix in inspector.get_indexes(spec.table)}
        if (spec.time_column,) not in leading:
            missing.append(f"{spec.table}.{spec.time_column}")
    assert missing == []
