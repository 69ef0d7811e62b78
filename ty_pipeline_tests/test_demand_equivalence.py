"""The SQL snapshot equals the Python oracle row for row, on randomized warehouses and on edge cases."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from ty_pipeline.domain.demand import SnapshotRow
from ty_pipeline.warehouse.demand_store import (
    active_summary,
    distinct_stored_states,
    end_of_day_utc,
    load_snapshot,
    store_snapshot,
)
from ty_pipeline.warehouse.schema import VIEWS, berufenet_mappings, postings
from ty_pipeline_tests.demand_oracle import active_mapped_postings, compute_snapshot

D = date(2026, 11, 18)
NOW = datetime(2026, 11, 19, 2, 0)

# Stored spellings: exact names, the v6 enum form, case and umlaut variants, aliases, and non-states.
STATE_SPELLINGS = [
    "Bayern", "Berlin", "Hessen", "Sachsen", "Baden-Württemberg", "Thüringen", "Bremen", "Saarland",
    "BADEN_WUERTTEMBERG", "NORDRHEIN_WESTFALEN", "bayern", " Berlin ", "Thueringen", "NRW", "Freistaat Sachsen",
    "Ausland", "München", "", None,
]
KLDB_CODES = ["43414", "43102", "81302", "81301", "27104", "01104", "52122", "73302"]
ODD_KLDB = [None, "", " ", "4", "B 434", "ab123", "4a123", " 4341", "4341 ", "\t8130", "01"]
# Names whose linguistic and code-point orders differ, to pin down how ties are broken.
NAMES = {
    "P1": ["Softwareentwickler/in", "softwareentwickler/in", "Software-Entwickler/in"],
    "P2": ["Ärztin/Arzt", "Arzt/Ärztin", "arzt/ärztin"],
    "P3": ["Gesundheits- und Krankenpfleger/in"],
    "P4": ["Koch/Köchin", "Köchin/Koch"],
    "P5": ["Zahnarzt/-ärztin", ""],
    "P6": [None],
}


def build_random_warehouse(engine: sa.Engine, seed: int, n: int) -> None:
    rng = random.Random(seed)
    post_rows, map_rows = [], []
    for i in range(1, n + 1):
        invalidated = rng.random() < 0.5
        invalidated_at = None
        if invalidated and rng.random() < 0.9:
            # Around the end of D and of the days before it, the boundary itself included.
            invalidated_at = end_of_day_utc(D - timedelta(days=rng.randint(-2, 10))) + rng.choice(
                [timedelta(0), timedelta(seconds=-1), timedelta(hours=rng.randint(-30, 30))]
            )
        post_rows.append({
            "posting_id": i, "source": "arbeitsagentur", "external_id": f"e{i}",
            "state": rng.choice(STATE_SPELLINGS), "partition_date": D - timedelta(days=rng.randint(-2, 40)),
            "first_seen_at": NOW, "last_seen_at": NOW, "invalidated": invalidated, "invalidated_at": invalidated_at,
        })
        if rng.random() < 0.1:
            continue  # no mapping row at all
        kldb = rng.choice(KLDB_CODES) if rng.random() < 0.85 else rng.choice(ODD_KLDB)
        profession = rng.choice([*NAMES, *NAMES, None, ""])
        name = rng.choice(NAMES[profession]) if profession else rng.choice([None, "Orphan name"])
        map_rows.append({
            "posting_id": i, "status": "ok" if kldb else "failed", "kldb": kldb, "berufenet_id": profession,
            "berufenet_name": name, "updated_at": NOW,
        })
    with engine.begin() as conn:
        if post_rows:
            conn.execute(postings.insert(), post_rows)
        if map_rows:
            conn.execute(berufenet_mappings.insert(), map_rows)


def sql_snapshot(engine: sa.Engine, day: date, min_postings: int) -> tuple[list[SnapshotRow], tuple[int, int, int]]:
    summary = active_summary(engine, day)
    written = len(store_snapshot(engine, day, NOW, min_postings_per_profession=min_postings,
                                 stored_states=distinct_stored_states(engine)))
    rows = load_snapshot(engine, day)
    assert written == len(rows)
    return sorted(rows, key=_key), (summary.counted, summary.without_state, summary.bad_kldb)


def oracle_snapshot(engine: sa.Engine, day: date, min_postings: int) -> tuple[list[SnapshotRow], tuple[int, int, int]]:
    snap = compute_snapshot(active_mapped_postings(engine, day), day, min_postings_per_profession=min_postings)
    return sorted(snap.rows, key=_key), (snap.counted, snap.without_state, snap.bad_kldb)


def _key(row: SnapshotRow) -> tuple[str, str, str]:
    return (row.state, row.domain_code, row.berufenet_id or "")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sql_snapshot_equals_the_python_oracle_on_a_random_warehouse(engine: sa.Engine, seed: int) -> None:
    build_random_warehouse(engine, seed, 1500)
    for day, min_postings in [(D, 3), (D, 20), (D - timedelta(days=5), 5), (D + timedelta(days=3), 1)]:
        expected, expected_counts = oracle_snapshot(engine, day, min_postings)
        actual, counts = sql_snapshot(engine, day, min_postings)
        assert expected, "the random warehouse must produce rows, or the comparison proves nothing"
        assert any(r.berufenet_id for r in expected)
        assert actual == expected, f"seed {seed}, {day}, min {min_postings}"
        assert counts == expected_counts


def test_empty_warehouse_gives_no_rows(engine: sa.Engine) -> None:
    assert sql_snapshot(engine, D, 1) == ([], (0, 0, 0)) == oracle_snapshot(engine, D, 1)


def test_only_unusable_postings_give_no_rows(engine: sa.Engine) -> None:
    """No state, non-Länder, malformed codes, nulls everywhere, invalidated without a date."""
    rows = [
        {"posting_id": i, "source": "dbank", "external_id": f"x{i}", "state": state, "partition_date": D,
         "first_seen_at": NOW, "last_seen_at": NOW, "invalidated": invalidated, "invalidated_at": None}
        for i, (state, invalidated) in enumerate(
            [(None, False), ("", False), ("Ausland", False), ("Bayern", False), ("Bayern", True)], start=1
        )
    ]
    mappings = [
        {"posting_id": i, "status": "ok", "kldb": kldb, "berufenet_id": None, "berufenet_name": None,
         "updated_at": NOW}
        for i, kldb in [(1, "43414"), (2, "43414"), (3, "43414"), (4, "x4341"), (5, "43414")]
    ]
    with engine.begin() as conn:
        conn.execute(postings.insert(), rows)
        conn.execute(berufenet_mappings.insert(), mappings)
    assert sql_snapshot(engine, D, 1) == ([], (0, 3, 1)) == oracle_snapshot(engine, D, 1)


def test_a_tie_between_names_goes_to_the_smallest_by_code_point(engine: sa.Engine) -> None:
    """PostgreSQL's linguistic collation would put "arzt" before "Ärztin" before "Arzt"; Python does not."""
    spellings = ["arzt/ärztin", "Ärztin/Arzt", "Arzt/Ärztin"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # A production server created with a German locale; the test server's default is C.UTF-8.
            conn.execute(sa.text("DROP VIEW postings_enriched"))
            conn.execute(sa.text(
                'ALTER TABLE berufenet_mappings ALTER COLUMN berufenet_name TYPE text COLLATE "de-x-icu"'
            ))
            conn.execute(sa.text(VIEWS["postings_enriched"]))
        conn.execute(postings.insert(), [
            {"posting_id": i, "source": "dbank", "external_id": f"t{i}", "state": "Berlin", "partition_date": D,
             "first_seen_at": NOW, "last_seen_at": NOW, "invalidated": False}
            for i in range(1, 7)
        ])
        conn.execute(berufenet_mappings.insert(), [
            {"posting_id": i, "status": "ok", "kldb": "81404", "berufenet_id": "P2",
             "berufenet_name": spellings[i % 3], "updated_at": NOW}
            for i in range(1, 7)
        ])
    rows, _ = sql_snapshot(engine, D, 1)
    assert [r.berufenet_name for r in rows if r.berufenet_id] == ["Arzt/Ärztin"]
    assert rows == oracle_snapshot(engine, D, 1)[0]


def test_distinct_stored_states_lists_every_spelling_once(engine: sa.Engine) -> None:
    build_random_warehouse(engine, 4, 300)
    with engine.connect() as conn:
        expected = {r[0] for r in conn.execute(sa.select(postings.c.state).distinct()) if r[0] is not None}
    found = distinct_stored_states(engine)
    assert len(found) == len(set(found)) and set(found) == expected
    assert {"", " Berlin ", "BADEN_WUERTTEMBERG"} <= expected
