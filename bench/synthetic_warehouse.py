"""Shared builders of the PostgreSQL benchmarks (bench_demand.py, bench_scale.py): the production-shaped
postings warehouse of issue #13 (the throw-away schema it goes into: ty_pipeline_tests/pg_schemas.py).

The warehouse: `n_postings` Jobsuche postings over 90 daily partitions ending at `today`, ~58 % invalidated
(older postings more often), 16 Länder weighted by population (1 % without a state, a few in the v6 enum
spelling), ~1,300 five-digit KldB codes in ~40 domains with a skewed popularity, ~4,500 professions (1-6
per code, a few with two name spellings), 93 % mapped (2 % of those without a KldB code), and a ~1 kB
`raw_json` per posting, as production stores it. Loaded with COPY (a 400,000-posting build takes about a
minute instead of ten).
"""

from __future__ import annotations

import io
import json
import random
import statistics
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from ty_pipeline.domain.states import STATES
from ty_pipeline.warehouse.demand_store import active_on
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.schema import berufenet_mappings, postings

DAYS = 90
INVALIDATED = 0.58
# Share of job postings per Land, roughly by population (Statistisches Bundesamt 2023).
STATE_WEIGHTS = [13.4, 15.9, 4.4, 3.0, 0.8, 2.2, 7.6, 1.9, 9.6, 21.5, 4.9, 1.2, 4.9, 2.6, 3.5, 2.5]
ENUM_SPELLING = {s: s.upper().replace("Ü", "UE").replace("-", "_") for s in STATES}


def build_postings_warehouse(url: str, n_postings: int, *, today: date, now: datetime, seed: int = 13) -> None:
    """COPY the synthetic warehouse (postings and berufenet_mappings) into `url`'s empty schema."""
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
    stamp = now.isoformat(sep=" ")

    post_buf, map_buf, raw_buf = io.StringIO(), io.StringIO(), io.StringIO()
    for pid in range(1, n_postings + 1):
        age = rng.randrange(DAYS)
        published = today - timedelta(days=age)
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
            stamp, stamp, "t" if invalidated else "f",
            _n(invalidated_at.isoformat(sep=" ") if invalidated_at else None),
        ]) + "\n")
        raw_buf.write(f"{pid}\t{raw.replace(chr(92), chr(92) * 2)}\t{stamp}\n")
        if rng.random() < 0.93:
            kldb, pro_id, spellings = rng.choices(professions, cum_weights=cum_weights)[0]
            if rng.random() < 0.02:
                map_buf.write(f"{pid}\tfailed\t\\N\t\\N\t\\N\t{stamp}\n")
            else:
                map_buf.write(f"{pid}\tok\t{pro_id}\t{rng.choice(spellings)}\t{kldb}\t{stamp}\n")
    raw_conn = engine.raw_connection()
    try:
        cur = raw_conn.cursor()
        post_buf.seek(0)
        cur.copy_expert(
            "COPY postings (posting_id, source, external_id, origin, title, state, partition_date, first_seen_at,"
            " last_seen_at, invalidated, invalidated_at) FROM STDIN", post_buf)
        raw_buf.seek(0)
        cur.copy_expert("COPY posting_payloads (posting_id, raw_json, updated_at) FROM STDIN", raw_buf)
        map_buf.seek(0)
        cur.copy_expert(
            "COPY berufenet_mappings (posting_id, status, berufenet_id, berufenet_name, kldb, updated_at)"
            " FROM STDIN", map_buf)
        # COPY with explicit ids does not move the sequence; the pipeline's own inserts would collide.
        cur.execute("SELECT setval(pg_get_serial_sequence('postings', 'posting_id'), %s)", (n_postings,))
        raw_conn.commit()
    finally:
        raw_conn.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum does after a bulk load: statistics, and the visibility map for index-only scans.
        conn.execute(sa.text("VACUUM ANALYZE"))


def _n(value: str | None) -> str:
    return "\\N" if value is None else value


def demand_floor(url: str, day: date, *, parallel: bool = True) -> int:
    """The plain-SQL floor of `demand_snapshots`: one GROUP BY state, domain over the active mapped postings.

    PostgreSQL runs it with parallel workers, which it never uses for an `INSERT ... SELECT`; `parallel=False`
    measures it serially."""
    bm = berufenet_mappings
    query = (
        sa.select(postings.c.state, sa.func.substr(bm.c.kldb, 1, 2), sa.func.count())
        .select_from(postings.join(bm, bm.c.posting_id == postings.c.posting_id))
        .where(active_on(day), bm.c.kldb.isnot(None))
        .group_by(postings.c.state, sa.func.substr(bm.c.kldb, 1, 2))
    )
    with get_engine(url).begin() as conn:
        if not parallel:
            conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
        return len(conn.execute(query).all())


def timed(fn: Callable[[], object], runs: int, *, before: Callable[[], object] | None = None) -> tuple[float, object]:
    """Median seconds of `runs` calls, and the last call's result; `before` runs untimed ahead of each call."""
    times, result = [], None
    for _ in range(runs):
        if before is not None:
            before()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result
