"""`store_snapshot` replaces a date in one transaction and hands back the rows exactly as stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ty_pipeline.warehouse.demand_store import distinct_stored_states, load_snapshot, store_snapshot
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.schema import berufenet_mappings, postings

D = date(2026, 11, 18)
NOW = datetime(2026, 11, 19, 2, 0)


@pytest.fixture
def engine(warehouse_url: str) -> Iterator[sa.Engine]:
    eng = get_engine(warehouse_url)
    ensure_schema(eng)
    # Bayern 43: 2 postings of P1, 1 of P2; Berlin 43: 2 of P1. P1's ratios are a whole 8.0, the domain's 9.6.
    places = [("Bayern", "P1"), ("Bayern", "P1"), ("Bayern", "P2"), ("Berlin", "P1"), ("Berlin", "P1")]
    with eng.begin() as conn:
        conn.execute(postings.insert(), [
            {"posting_id": i, "source": "dbank", "external_id": f"s{i}", "state": state,
             "partition_date": D - timedelta(days=i), "first_seen_at": NOW, "last_seen_at": NOW, "invalidated": False}
            for i, (state, _) in enumerate(places, start=1)
        ])
        conn.execute(berufenet_mappings.insert(), [
            {"posting_id": i, "status": "ok", "kldb": "43414", "berufenet_id": pid, "berufenet_name": f"Beruf {pid}",
             "updated_at": NOW}
            for i, (_, pid) in enumerate(places, start=1)
        ])
    yield eng


def store(engine: sa.Engine, now: datetime = NOW) -> list[Any]:
    return store_snapshot(engine, D, now, min_postings_per_profession=2, stored_states=distinct_stored_states(engine))


def test_the_returned_rows_are_the_stored_rows(engine: sa.Engine) -> None:
    returned = store(engine)
    assert sorted(returned, key=repr) == sorted(load_snapshot(engine, D), key=repr)
    assert len(returned) == 4  # 2 domain rows, P1 in both states; P2 is under the threshold
    # SQLite's RETURNING hands back a whole REAL as an integer; the rows must carry floats as stored.
    assert all(type(r.demand_ratio) is float and type(r.national_avg) is float for r in returned)


def test_a_failure_after_the_delete_leaves_the_previous_rows(engine: sa.Engine) -> None:
    before = sorted(store(engine), key=repr)

    def crash(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().startswith("INSERT INTO demand_snapshots"):
            raise RuntimeError("crash before the new rows are in")

    sa.event.listen(engine, "before_cursor_execute", crash)
    try:
        with pytest.raises(RuntimeError):
            store(engine, NOW + timedelta(hours=1))
    finally:
        sa.event.remove(engine, "before_cursor_execute", crash)
    assert sorted(load_snapshot(engine, D), key=repr) == before
    # Nothing of the failed attempt lingers on the pooled connection (PostgreSQL's temporary table).
    assert sorted(store(engine, NOW + timedelta(hours=2)), key=repr) == before
