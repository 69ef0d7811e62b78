"""Warehouse schema, upserts, re-sightings and stale sweeps on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from ty_pipeline.domain.invalidation import InvalidationReason, StaleRules
from ty_pipeline.domain.posting_record import MAX_EXTERNAL_ID_BYTES, PostingRecord, Source
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.postings_store import (
    invalidate_posting,
    sweep_stale_arbeitsagentur,
    sweep_stale_deutsche_bank,
    touch_seen,
    upsert_postings,
)
from ty_pipeline.warehouse.schema import postings

CONTRACT_COLUMNS = {
    "posting_id", "source", "external_id", "title", "partition_date", "state", "city", "invalidated",
    "job_description", "summary", "skill_keywords", "ihl_score", "ihl_category", "berufenet_id",
    "berufenet_name", "kldb", "qualification_level", "berufenet_status", "has_embedding",
}
DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 22, 0)


def rec(ext: str, source: Source = Source.ARBEITSAGENTUR, **kw) -> PostingRecord:  # type: ignore[no-untyped-def]
    base = dict(title=f"Stelle {ext}", city="Berlin", state="Berlin", published_date=DAY, raw={"id": ext})
    base.update(kw)
    return PostingRecord(source=source, external_id=ext, **base)


def rows(engine: sa.Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.external_id: dict(r._mapping) for r in conn.execute(sa.select(postings))}


def test_view_has_every_contract_column_and_enrichments_start_null(engine: sa.Engine) -> None:
    upsert_postings(engine, [rec("a")], partition_date=DAY, now=NOW)
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM postings_enriched"))
        cols = set(result.keys())
        row = dict(result.one()._mapping)
    assert cols >= CONTRACT_COLUMNS, CONTRACT_COLUMNS - cols
    for col in ("job_description", "summary", "skill_keywords", "ihl_score", "berufenet_id", "kldb"):
        assert row[col] is None
    assert not row["has_embedding"]
    assert row["source"] == "arbeitsagentur" and row["partition_date"] in (DAY, DAY.isoformat())


def test_unique_key_is_a_real_constraint(engine: sa.Engine) -> None:
    upsert_postings(engine, [rec("a")], partition_date=DAY, now=NOW)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            postings.insert().values(
                source="arbeitsagentur", external_id="a", partition_date=DAY, first_seen_at=NOW, last_seen_at=NOW
            )
        )


def test_upsert_counts_new_unchanged_changed_and_keeps_first_seen(engine: sa.Engine) -> None:
    first = upsert_postings(engine, [rec("a"), rec("b")], partition_date=DAY, now=NOW)
    assert (first.new, first.changed, first.unchanged) == (2, 0, 0)
    later = NOW + timedelta(hours=5)
    second = upsert_postings(
        engine, [rec("a"), rec("b", title="Neuer Titel")], partition_date=DAY + timedelta(days=1), now=later
    )
    assert (second.new, second.changed, second.unchanged) == (0, 1, 1)
    state = rows(engine)
    assert len(state) == 2
    assert state["b"]["title"] == "Neuer Titel"
    assert state["a"]["first_seen_at"] == NOW and state["a"]["last_seen_at"] == later
    # The partition a posting belongs to never moves.
    assert state["a"]["partition_date"] == DAY


def test_resighting_revives_only_unseen_postings_and_holds_those_the_source_declared_gone(
    engine: sa.Engine,
) -> None:
    upsert_postings(engine, [rec("a"), rec("g"), rec("z", source=Source.DEUTSCHE_BANK)], partition_date=DAY, now=NOW)
    with engine.begin() as conn:
        ids = {r.external_id: r.posting_id for r in conn.execute(sa.select(postings.c.external_id, postings.c.posting_id))}
        invalidate_posting(conn, ids["a"], InvalidationReason.STALE_UNSEEN, NOW)
        invalidate_posting(conn, ids["g"], InvalidationReason.NOT_FOUND_AT_SOURCE, NOW)
        invalidate_posting(conn, ids["z"], InvalidationReason.REMOVED_FROM_SOURCE, NOW)
    later = NOW + timedelta(days=1)
    stats = upsert_postings(engine, [rec("a"), rec("g")], partition_date=DAY, now=later)
    assert (stats.resurrected, stats.held_gone, stats.new) == (1, 1, 0)
    touched, resurrected = touch_seen(engine, [("deutsche_bank", "z")], now=later)
    assert (touched, resurrected) == (1, 0)
    state = rows(engine)
    assert len(state) == 3  # no duplicate row either way
    assert not state["a"]["invalidated"]
    assert state["a"]["invalidated_reason"] is None and state["a"]["invalidated_at"] is None
    for ext, reason in (("g", "not_found_at_source"), ("z", "removed_from_source")):
        assert state[ext]["invalidated"] and state[ext]["invalidated_reason"] == reason
        assert state[ext]["invalidated_at"] == NOW  # the date it went away is kept
        assert state[ext]["last_seen_at"] == later  # the sighting is recorded: it makes a re-check due
    assert state["g"]["recheck_after"] == NOW + timedelta(days=3)


def test_a_resighting_within_the_resolution_writes_nothing(engine: sa.Engine) -> None:
    upsert_postings(engine, [rec("a"), rec("b", source=Source.DEUTSCHE_BANK)], partition_date=DAY, now=NOW)
    before = rows(engine)
    soon = NOW + timedelta(minutes=20)
    stats = upsert_postings(engine, [rec("a")], partition_date=DAY, now=soon)
    touch_seen(engine, [("deutsche_bank", "b")], now=soon)
    assert stats.unchanged == 1 and rows(engine) == before
    much_later = NOW + timedelta(hours=3)
    upsert_postings(engine, [rec("a")], partition_date=DAY, now=much_later)
    assert rows(engine)["a"]["last_seen_at"] == much_later


def test_aa_stale_sweep_needs_both_age_and_absence(engine: sa.Engine) -> None:
    old = NOW - timedelta(days=40)
    upsert_postings(engine, [rec("old_unseen"), rec("old_seen")], partition_date=DAY, now=old)
    upsert_postings(engine, [rec("young")], partition_date=DAY, now=NOW - timedelta(days=10))
    touch_seen(engine, [("arbeitsagentur", "old_seen")], now=NOW - timedelta(days=2))
    result = sweep_stale_arbeitsagentur(engine, now=NOW, rules=StaleRules())
    state = rows(engine)
    assert result.invalidated == 1
    assert state["old_unseen"]["invalidated"]
    assert state["old_unseen"]["invalidated_reason"] == "stale_unseen"
    assert not state["old_seen"]["invalidated"] and not state["young"]["invalidated"]


def test_aa_sweep_refuses_to_hit_more_than_half_of_the_active_postings(engine: sa.Engine) -> None:
    old = NOW - timedelta(days=40)
    upsert_postings(engine, [rec(f"o{i}") for i in range(3)], partition_date=DAY, now=old)
    upsert_postings(engine, [rec("young")], partition_date=DAY, now=NOW)
    refused = sweep_stale_arbeitsagentur(engine, now=NOW, rules=StaleRules())
    assert refused.invalidated == 0 and "suggests a fetch problem" in (refused.skipped_reason or "")
    assert not any(r["invalidated"] for r in rows(engine).values())


def test_db_sweep_invalidates_unseen_and_refuses_to_hit_more_than_half(engine: sa.Engine) -> None:
    db = Source.DEUTSCHE_BANK
    upsert_postings(engine, [rec(f"d{i}", source=db) for i in range(4)], partition_date=DAY, now=NOW - timedelta(days=3))
    touch_seen(engine, [("deutsche_bank", f"d{i}") for i in range(1, 4)], now=NOW)
    ok = sweep_stale_deutsche_bank(engine, now=NOW, rules=StaleRules())
    assert ok.invalidated == 1 and ok.skipped_reason is None
    assert rows(engine)["d0"]["invalidated_reason"] == "removed_from_source"
    # Now 3 active, all unseen for 3 days: a sweep would take 100% -> refused.
    refused = sweep_stale_deutsche_bank(engine, now=NOW + timedelta(days=3), rules=StaleRules())
    assert refused.invalidated == 0 and "suggests an API problem" in (refused.skipped_reason or "")
    assert sum(1 for r in rows(engine).values() if r["invalidated"]) == 1


def test_failed_chunk_is_counted_and_the_other_chunks_still_land(engine: sa.Engine) -> None:
    good = [rec(f"g{i}") for i in range(3)]
    # A lone surrogate: neither psycopg2 nor sqlite3 can encode it, so the chunk fails on both backends.
    bad = [rec("y1", title="Koch\ud800")]
    stats = upsert_postings(engine, good + bad, partition_date=DAY, now=NOW, chunk_size=3)
    assert stats.errors == 1 and stats.new == 3 and stats.lost[0].startswith("arbeitsagentur:y1: ")
    assert set(rows(engine)) == {"g0", "g1", "g2"}


def test_ids_up_to_the_byte_limit_are_stored_and_longer_ones_are_refused_alike_on_both_backends(
    engine: sa.Engine
) -> None:
    """2,048 bytes of UTF-8 is the limit, not 2,048 characters: 1,025 "ü" are 2,050 bytes."""
    at_limit = "R" * (MAX_EXTERNAL_ID_BYTES - 4) + "üü"  # exactly 2,048 bytes
    umlauts = "ü" * (MAX_EXTERNAL_ID_BYTES // 2 + 1)  # 1,025 characters, 2,050 bytes
    one_over = "R" * (MAX_EXTERNAL_ID_BYTES + 1)
    good = [rec(f"g{i}") for i in range(4)]
    stats = upsert_postings(engine, [*good[:2], rec(at_limit), rec(umlauts), rec(one_over), *good[2:]],
                            partition_date=DAY, now=NOW, chunk_size=2)
    assert (stats.new, stats.errors) == (5, 2)
    assert set(rows(engine)) == {"g0", "g1", "g2", "g3", at_limit}
    assert [row["problem"] for row in stats.lost_rows] == [
        "external id is 2,050 bytes long (UTF-8); the warehouse indexes (source, external_id) and stores ids "
        "of at most 2,048 bytes",
        "external id is 2,049 bytes long (UTF-8); the warehouse indexes (source, external_id) and stores ids "
        "of at most 2,048 bytes",
    ]
    # Reports name a refused id by its start and length, not by kilobytes of it.
    assert stats.lost_rows[1]["external_id"] == f"arbeitsagentur:{'R' * 80}… (2,049 characters)"
    assert stats.lost[1] == f"arbeitsagentur:{'R' * 80}… (2,049 characters): {stats.lost_rows[1]['problem']}"


def _set_up_schema(url: str) -> None:

    ensure_schema(get_engine(url))


def test_parallel_steps_set_up_one_sqlite_warehouse_without_tripping_over_each_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The parallel steps of one run each set up the schema in their own process on first use."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    for _ in range(2):  # a fresh file, then one whose schema exists (the views are left as they are)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(6) as pool:
            pool.map(_set_up_schema, [url] * 12)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM postings_enriched")).scalar_one() == 0
        views = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'view'").scalars().all()
    engine.dispose()
    assert views == ["postings_enriched"]
