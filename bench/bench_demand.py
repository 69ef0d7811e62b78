"""Benchmark of the `demand_snapshots` asset on a 400,000-posting PostgreSQL warehouse (a script, not a test).

Builds the warehouse of issue #13 in a fresh PostgreSQL schema (dropped afterwards; bench/synthetic_warehouse.py):
400,000 postings over 90 daily partitions, ~58 % invalidated, 16 Länder, ~1,300 KldB codes in ~40 domains,
93 % mapped, and a ~1 kB `raw_json` per posting, as production stores it.
Then it measures, in the same run, the median of `--runs`:

* the asset step: `dagster.materialize` of `demand_snapshots` for the newest partition (the whole step,
  Dagster's in-process run overhead included) and the seconds the asset reports in its metadata;
* the old Python path: the former asset body (every active mapped posting into Python, aggregated row by
  row, written in batches, counted and checked), from ty_pipeline_tests/demand_oracle.py;
* the plain-SQL floor: one `GROUP BY state, domain` over the same active mapped postings, nothing written;
  PostgreSQL runs it with parallel workers, which it never uses for an `INSERT ... SELECT`, so the floor
  is also measured serially (`max_parallel_workers_per_gather = 0`).

It prints the times and the ratios, and checks that both paths stored the same rows.

Usage: `python bench/bench_demand.py [--postings 400000] [--runs 3] [--no-indexes] [--keep | --reuse SCHEMA]`.
`--keep` leaves the warehouse's schema in place and prints its name; `--reuse SCHEMA` measures on it again
without the build (about 40 s of the run). Before each timed run of either path `demand_snapshots` is
vacuumed, as autovacuum would between two daily runs.
`TY_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/test) names the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic_warehouse import build_postings_warehouse, demand_floor, timed  # noqa: E402
from ty_pipeline.assets.demand import demand_snapshots  # noqa: E402
from ty_pipeline.domain.demand import consistency_problems  # noqa: E402
from ty_pipeline.domain.states import STATES  # noqa: E402
from ty_pipeline.resources.warehouse import WarehouseResource  # noqa: E402
from ty_pipeline.warehouse.demand_store import active_on, load_snapshot  # noqa: E402
from ty_pipeline.warehouse.engine import get_engine  # noqa: E402
from ty_pipeline.warehouse.schema import berufenet_mappings, postings  # noqa: E402
from ty_pipeline_tests.demand_oracle import (  # noqa: E402
    active_mapped_postings,
    compute_snapshot,
    replace_snapshot,
)
from ty_pipeline_tests.pg_schemas import pg_schema  # noqa: E402

TODAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 19, 2, 0)


def build(url: str, n_postings: int) -> None:
    build_postings_warehouse(url, n_postings, today=TODAY, now=NOW)


def new_step(url: str, metas: list[dict]) -> dict:
    result = dg.materialize(
        [demand_snapshots], partition_key=TODAY.isoformat(), resources={"warehouse": WarehouseResource(url=url)}
    )
    assert result.success
    mat = result.asset_materializations_for_node("demand_snapshots")[0]
    meta = {k: v.value for k, v in mat.metadata.items()}
    metas.append(meta)
    return meta


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


def median_of(metas: list[dict], key: str) -> float:
    return statistics.median(m[key] for m in metas)


def vacuum_snapshots(url: str) -> None:
    with get_engine(url).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM demand_snapshots"))


def sql_floor(url: str, parallel: bool = True) -> int:
    return demand_floor(url, TODAY, parallel=parallel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postings", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-indexes", action="store_true", help="drop the demand indexes (to see what they give)")
    parser.add_argument("--keep", action="store_true", help="keep the warehouse's schema for a later --reuse")
    parser.add_argument("--reuse", metavar="SCHEMA", help="measure on a schema kept by --keep instead of building one")
    args = parser.parse_args()
    with pg_schema("bench_", keep=args.keep, reuse=args.reuse) as url:
        started = time.perf_counter()
        if args.reuse is None:
            build(url, args.postings)
        engine = get_engine(url)
        with engine.connect() as conn:
            active = conn.execute(sa.select(sa.func.count()).select_from(postings).where(active_on(TODAY))).scalar()
            size = conn.execute(sa.text("SELECT pg_size_pretty(pg_total_relation_size('postings'))")).scalar()
            total = conn.execute(sa.select(sa.func.count()).select_from(postings)).scalar_one()
        print(f"{'reused' if args.reuse else 'built'} {total:,} postings ({active:,} active on {TODAY}, "
              f"postings {size}) in {time.perf_counter() - started:.0f} s")
        if args.no_indexes:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP INDEX IF EXISTS ix_postings_active"))
            print("demand indexes dropped")

        floor_s, groups = timed(lambda: sql_floor(url), args.runs)
        serial_s, _ = timed(lambda: sql_floor(url, parallel=False), args.runs)
        # Each run replaces the rows the previous one wrote; without a vacuum in between (autovacuum takes a
        # minute or more to come round) every run would also step over all earlier runs' dead index entries.
        old_s, old_rows = timed(lambda: old_path(url), args.runs, before=lambda: vacuum_snapshots(url))
        old_stored = sorted(load_snapshot(engine, TODAY), key=repr)
        metas: list[dict] = []
        step_s, meta = timed(lambda: new_step(url, metas), args.runs, before=lambda: vacuum_snapshots(url))
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
            ("  asset body (metadata `seconds`)", median_of(metas, "seconds")),
            ("    snapshot statements", median_of(metas, "seconds_statement")),
            ("    count (beside them), left to wait", median_of(metas, "seconds_count_wait")),
            ("    check + metadata", median_of(metas, "seconds_check")),
        ]
        for label, seconds in rows:
            print(f"{label:<40} {seconds:7.3f} s = {seconds / floor_s:5.1f} x floor, "
                  f"{seconds / serial_s:5.1f} x serial floor")
        print("asset body of each run: " + ", ".join(f"{m['seconds']:.2f} s" for m in metas))
        print(f"old path / asset body: {old_s / median_of(metas, 'seconds'):.1f} x faster")
        if not same:
            sys.exit("the SQL path stored different rows than the old Python path")


if __name__ == "__main__":
    main()
