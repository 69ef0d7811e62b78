"""Benchmark of the `demand_snapshots` asset on a 400,000-posting PostgreSQL warehouse (a script, not a test).

Builds the warehouse of issue #13 in a fresh PostgreSQL schema (dropped afterwards): 400,000 postings over
90 daily partitions, ~58 % invalidated (older postings more often), 16 Länder weighted by population
(1 % without a state, a few in the v6 enum spelling), ~1,300 five-digit KldB codes in ~40 domains with a
skewed popularity, ~4,500 professions (1-6 per code, a few with two name spellings), 93 % mapped
(2 % of those without a KldB code), and a ~1 kB `raw_json` per posting, as production stores it.
Then it measures, in the same run, the median of `--runs`:

* the asset step: `dagster.materialize` of `demand_snapshots` for the newest partition (the whole step,
  Dagster's in-process run overhead included) and the seconds the asset reports in its metadata;
* the old Python path: the former asset body (every active mapped posting into Python, aggregated row by
  row, written in batches, counted and checked), from ty_pipeline_tests/demand_oracle.py;
* the plain-SQL floor: one `GROUP BY state, domain` over the same active mapped postings, nothing written;
  PostgreSQL runs it with parallel workers, which it never uses for an `INSERT ... SELECT`, so the floor
  is also measured serially (`max_parallel_workers_per_gather = 0`).

It prints the times and the ratios, and checks that both paths stored the same rows.

Usage: `python bench/bench_demand.py [--postings 400000] [--runs 3] [--no-indexes]`.
`TY_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/test) names the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ty_pipeline.assets.demand import demand_snapshots  # noqa: E402
from ty_pipeline.domain.demand import consistency_problems  # noqa: E402
from ty_pipeline.domain.states import STATES  # noqa: E402
from ty_pipeline.resources.warehouse import WarehouseResource  # noqa: E402
from ty_pipeline.warehouse.demand_store import active_on, load_snapshot  # noqa: E402
from ty_pipeline.warehouse.engine import dispose_engine, ensure_schema, get_engine  # noqa: E402
from ty_pipeline.warehouse.schema import berufenet_mappings, postings  # noqa: E402
from ty_pipeline_tests.demand_oracle import (  # noqa: E402
    active_mapped_postings,
    compute_snapshot,
    replace_snapshot,
)

PG_URL = os.environ.get("TY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TODAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 19, 2, 0)
DAYS = 90
INVALIDATED = 0.58
# Share of job postings per Land, roughly by population (Statistisches Bundesamt 2023).
STATE_WEIGHTS = [13.4, 15.9, 4.4, 3.0, 0.8, 2.2, 7.6, 1.9, 9.6, 21.5, 4.9, 1.2, 4.9, 2.6, 3.5, 2.5]
ENUM_SPELLING = {s: s.upper().replace("Ü", "UE").replace("-", "_") for s in STATES}


def build(url: str, n_postings: int, seed: int = 13) -> None:
    engine = get_engine(url)
    ensure_schema(engine)
    rng = random.Random(seed)
    domains = rng.sample(range(11, 100), 40)
    codes = sorted({f"{rng.choice(domains):02d}{rng.randint(100, 999)}" for _ in range(1400)})[:1300]
    professions: list[tuple[str, str, list[str]]] = []  # (kldb, id, name spellings)
    for code in codes:
        for k in range(rng.randint(1, 6)):
            name = f"Beruf {code}-{k}/in"
            spellings = [name, name.replace("/in", " (m/w/d)")] if rng.random() < 0.1 else [name]
            professions.append((code, f"{code}-{100 + k}", spellings))
    # Skewed popularity: a few professions carry most postings (Zipf-like).
    weights = [1 / (rank + 1) ** 0.75 for rank in range(len(professions))]
    rng.shuffle(weights)
    cum_weights = []
    total = 0.0
    for w in weights:
        total += w
        cum_weights.append(total)
    padding = "x" * 700

    post_buf, map_buf = io.StringIO(), io.StringIO()
    for pid in range(1, n_postings + 1):
        age = rng.randrange(DAYS)
        published = TODAY - timedelta(days=age)
        # Older postings are more often gone; the mean over 90 days is ~58 %.
        invalidated = rng.random() < min(0.97, INVALIDATED * (0.25 + 1.5 * age / DAYS))
        invalidated_at = (
            datetime.combine(published, datetime.min.time()) + timedelta(days=rng.uniform(1, max(1, age)))
            if invalidated else None
        )
        if rng.random() < 0.01:
            state = None
        else:
            state = rng.choices(STATES, STATE_WEIGHTS)[0]
            if rng.random() < 0.02:
                state = ENUM_SPELLING[state]
        raw = json.dumps({"refnr": f"10000-{pid}", "arbeitsort": {"region": state}, "beschreibung": padding})
        post_buf.write("\t".join([
            str(pid), "arbeitsagentur", f"10000-{pid}", "api", f"Titel {pid}", _n(state), published.isoformat(),
            NOW.isoformat(sep=" "), NOW.isoformat(sep=" "), raw.replace("\\", "\\\\"), "t" if invalidated else "f",
            _n(invalidated_at.isoformat(sep=" ") if invalidated_at else None),
        ]) + "\n")
        if rng.random() < 0.93:
            kldb, pro_id, spellings = rng.choices(professions, cum_weights=cum_weights)[0]
            if rng.random() < 0.02:
                map_buf.write(f"{pid}\tfailed\t\\N\t\\N\t\\N\t{NOW.isoformat(sep=' ')}\n")
            else:
                map_buf.write(f"{pid}\tok\t{pro_id}\t{rng.choice(spellings)}\t{kldb}\t{NOW.isoformat(sep=' ')}\n")
    raw_conn = engine.raw_connection()
    try:
        cur = raw_conn.cursor()
        post_buf.seek(0)
        cur.copy_expert(
            "COPY postings (posting_id, source, external_id, origin, title, state, partition_date, first_seen_at,"
            " last_seen_at, raw_json, invalidated, invalidated_at) FROM STDIN", post_buf)
        map_buf.seek(0)
        cur.copy_expert(
            "COPY berufenet_mappings (posting_id, status, berufenet_id, berufenet_name, kldb, updated_at)"
            " FROM STDIN", map_buf)
        raw_conn.commit()
    finally:
        raw_conn.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does after a bulk load: statistics, and the visibility map for index-only scans.
        conn.execute(sa.text("VACUUM ANALYZE"))


def _n(value: str | None) -> str:
    return "\\N" if value is None else value


def new_step(url: str) -> dict:
    result = dg.materialize(
        [demand_snapshots], partition_key=TODAY.isoformat(), resources={"warehouse": WarehouseResource(url=url)}
    )
    assert result.success
    mat = result.asset_materializations_for_node("demand_snapshots")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def old_path(url: str) -> int:
    """The former asset body, step for step."""
    engine = get_engine(url)
    snapshot = compute_snapshot(active_mapped_postings(engine, TODAY), TODAY)
    written = replace_snapshot(engine, TODAY, snapshot.rows, NOW)
    bm = berufenet_mappings
    with engine.connect() as conn:
        conn.execute(sa.select(sa.func.count()).select_from(postings).where(active_on(TODAY))).scalar_one()
        per_state = conn.execute(
            sa.select(postings.c.state, sa.func.count())
            .select_from(postings.join(bm, bm.c.posting_id == postings.c.posting_id))
            .where(active_on(TODAY), bm.c.kldb.isnot(None), postings.c.state.in_(STATES))
            .group_by(postings.c.state)
        ).all()
    consistency_problems(load_snapshot(engine, TODAY), dict(per_state))
    return written


def sql_floor(url: str, parallel: bool = True) -> int:
    bm = berufenet_mappings
    query = (
        sa.select(postings.c.state, sa.func.substr(bm.c.kldb, 1, 2), sa.func.count())
        .select_from(postings.join(bm, bm.c.posting_id == postings.c.posting_id))
        .where(active_on(TODAY), bm.c.kldb.isnot(None))
        .group_by(postings.c.state, sa.func.substr(bm.c.kldb, 1, 2))
    )
    with get_engine(url).begin() as conn:
        if not parallel:
            conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
        return len(conn.execute(query).all())


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


@contextmanager
def pg_schema() -> Iterator[str]:
    admin = sa.create_engine(PG_URL)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postings", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-indexes", action="store_true", help="drop the demand indexes (to see what they give)")
    args = parser.parse_args()
    with pg_schema() as url:
        started = time.perf_counter()
        build(url, args.postings)
        engine = get_engine(url)
        with engine.connect() as conn:
            active = conn.execute(sa.select(sa.func.count()).select_from(postings).where(active_on(TODAY))).scalar()
            size = conn.execute(sa.text("SELECT pg_size_pretty(pg_total_relation_size('postings'))")).scalar()
        print(f"built {args.postings:,} postings ({active:,} active on {TODAY}, postings {size}) "
              f"in {time.perf_counter() - started:.0f} s")
        if args.no_indexes:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP INDEX IF EXISTS ix_postings_active"))
            print("demand indexes dropped")

        floor_s, groups = timed(lambda: sql_floor(url), args.runs)
        serial_s, _ = timed(lambda: sql_floor(url, parallel=False), args.runs)
        old_s, old_rows = timed(lambda: old_path(url), args.runs)
        old_stored = sorted(load_snapshot(engine, TODAY), key=repr)
        step_s, meta = timed(lambda: new_step(url), args.runs)
        new_stored = sorted(load_snapshot(engine, TODAY), key=repr)
        assert meta is not None
        same = old_stored == new_stored
        print(f"rows: {meta['rows_written']:,} ({meta['domain_rows']} domain, {meta['profession_rows']:,} profession) "
              f"from {meta['mapped_active_postings']:,} mapped active postings; identical to the old path: {same}")
        print(f"plain-SQL floor (GROUP BY state, domain; {groups} groups): {floor_s:.3f} s")
        print(f"plain-SQL floor, serial:                 {serial_s:.3f} s")
        rows = [
            ("old Python path", old_s),
            ("asset step (dagster.materialize)", step_s),
            ("  asset body (metadata `seconds`)", meta["seconds"]),
            ("    snapshot INSERT ... SELECT", meta["seconds_statement"]),
            ("    count (beside it), left to wait", meta["seconds_count_wait"]),
            ("    read back + check", meta["seconds_check"]),
        ]
        for label, seconds in rows:
            print(f"{label:<40} {seconds:7.3f} s = {seconds / floor_s:5.1f} x floor, "
                  f"{seconds / serial_s:5.1f} x serial floor")
        print(f"old path / asset body: {old_s / meta['seconds']:.1f} x faster")
        if not same:
            sys.exit("the SQL path stored different rows than the old Python path")


if __name__ == "__main__":
    main()
