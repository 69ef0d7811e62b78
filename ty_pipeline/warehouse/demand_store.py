"""Which postings were active on a date, and the `demand_snapshots` rows of that date.

Active on day D (the snapshot date, Europe/Berlin):

* published on or before D: `partition_date <= D` (the posting's first publication date as first
  seen; it never moves, so a re-publication does not make an old posting look new), and
* not invalidated as of D: `invalidated` is false, or it was invalidated after D ended
  (`invalidated_at` at or after D+1 00:00 Berlin; `invalidated_at` is stored as naive UTC). A posting
  flagged invalidated without a timestamp cannot be dated and counts as inactive.

The warehouse keeps no invalidation history: a posting that was invalidated and later re-sighted has
its `invalidated_at` cleared, so it counts as active for the days it was away too. For today's
snapshot this is exactly upstream's `NOT invalidated`.

The rows are computed in the warehouse (`store_snapshot`: on PostgreSQL a parallel grouping pass into a
temporary table, then one `INSERT ... SELECT ... RETURNING`), following the rules in
ty_pipeline/domain/demand.py; nothing per posting passes through Python. The Python implementation it
replaced is the test oracle (ty_pipeline_tests/demand_oracle.py). One known difference: Python's
`str.isdigit` also accepts non-ASCII digits ("²") and `str.strip` non-ASCII spaces in a KldB code; the SQL
takes ASCII digits and ASCII whitespace only. KldB codes come from the catalog as five ASCII digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Date,
    DateTime,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    or_,
    select,
    text,
)

from ty_pipeline.domain.clock import BERLIN
from ty_pipeline.domain.demand import (
    FRESH_LONG_DAYS,
    FRESH_SHORT_DAYS,
    ActiveSummary,
    SnapshotRow,
    StateTally,
    state_spellings,
    summarize,
)
from ty_pipeline.domain.states import STATES
from ty_pipeline.warehouse.schema import berufenet_mappings, demand_snapshots, postings

# What Python's str.strip() removes from a KldB code in practice (the ASCII whitespace).
_WHITESPACE = " \t\n\r\x0b\x0c"
WORK_MEM = "64MB"  # per sort/hash node of the demand statements, for their transactions only


def end_of_day_utc(day: date) -> datetime:
    """D+1 00:00 in Berlin as naive UTC, the form `invalidated_at` is stored in."""
    midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=BERLIN)
    return midnight.astimezone(UTC).replace(tzinfo=None)


def active_on(day: date) -> ColumnElement[bool]:
    return and_(
        postings.c.partition_date <= day,
        or_(postings.c.invalidated == false(), postings.c.invalidated_at >= end_of_day_utc(day)),
    )


def _code(kldb: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.trim(kldb, _WHITESPACE)


def _has_domain(kldb: ColumnElement[Any]) -> ColumnElement[bool]:
    """SQL twin of "the stripped code starts with two digits" (NULL codes have none)."""
    code = _code(kldb)
    return and_(
        func.length(code) >= 2,
        func.substr(code, 1, 1).in_(list("0123456789")),
        func.substr(code, 2, 1).in_(list("0123456789")),
    )


def _tune(conn: Connection) -> None:
    """PostgreSQL settings for this transaction only.

    The default 4 MB work_mem made the aggregation spill to disk on a 400k-posting warehouse; and the
    planner, whose row estimates after a grouping are far too high, compiled the statements with JIT:
    0.2-0.3 s of compiling for statements that run in about a second.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
        conn.execute(text("SET LOCAL jit = off"))


def active_summary(engine: Engine, day: date, states: Sequence[str] = STATES) -> ActiveSummary:
    """Active postings per stored state value, counted apart from the snapshot statement.

    It also yields the distinct stored spellings the snapshot statement needs, and the mapped postings
    per Land the consistency check compares the stored rows with.
    """
    bm = berufenet_mappings
    query = (
        select(
            postings.c.state,
            func.count().label("active"),
            func.count(bm.c.kldb).label("mapped"),
            func.coalesce(func.sum(case((_has_domain(bm.c.kldb), 1), else_=0)), 0).label("valid"),
        )
        .select_from(postings.outerjoin(bm, bm.c.posting_id == postings.c.posting_id))
        .where(active_on(day))
        .group_by(postings.c.state)
    )
    with engine.begin() as conn:
        _tune(conn)
        tallies = [StateTally(r.state, r.active, r.mapped, r.valid) for r in conn.execute(query)]
    return summarize(tallies, states)


def distinct_stored_states(engine: Engine) -> list[str]:
    """The distinct non-null `postings.state` values, a few dozen, in milliseconds.

    A loose index scan (each step jumps to the next larger value in `ix_postings_state`) instead of a
    DISTINCT over every posting, so the snapshot statement need not wait for the count to learn them.
    """
    query = text(
        "WITH RECURSIVE s(state) AS ("
        " SELECT MIN(state) FROM postings"
        " UNION ALL"
        " SELECT (SELECT MIN(p.state) FROM postings p WHERE p.state > s.state) FROM s WHERE s.state IS NOT NULL"
        ") SELECT state FROM s WHERE state IS NOT NULL"
    )
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def _base_sql(dialect: str, n_spellings: int) -> str:
    """The statement's one pass over the postings: the active mapped postings of a Land with a domain, grouped
    by (Land, domain, profession id, profession name) with their counts (`n`, `f7`, `f14`).

    Grouped first by stored values only (`grains`, ~45k groups on 400k postings) so no function runs per
    posting; the spellings are then looked up per grain, and the domain is computed once per distinct
    KldB code (~1,300) and joined back. PostgreSQL cannot estimate rows filtered by string functions:
    with the domain filter pushed into the scan it misestimated it 1:70,000 and picked nested loops
    (68 s); the MATERIALIZED fence keeps it out.
    """
    spellings = ", ".join(f"(:s{i}, :c{i})" for i in range(n_spellings))
    listed = ", ".join(f":s{i}" for i in range(n_spellings))
    fence = "MATERIALIZED " if dialect == "postgresql" else ""
    digits = "('0','1','2','3','4','5','6','7','8','9')"
    return f"""
WITH grains AS {fence}(
    SELECT p.state AS stored_state, bm.kldb AS kldb, bm.berufenet_id AS berufenet_id,
           bm.berufenet_name AS berufenet_name, COUNT(*) AS n,
           SUM(CASE WHEN p.partition_date >= :fresh_short THEN 1 ELSE 0 END) AS f7,
           SUM(CASE WHEN p.partition_date >= :fresh_long THEN 1 ELSE 0 END) AS f14
    FROM postings p
    JOIN berufenet_mappings bm ON bm.posting_id = p.posting_id
    WHERE p.partition_date <= :day
      AND (p.invalidated = false OR p.invalidated_at >= :end_of_day)
      AND bm.kldb IS NOT NULL
      AND p.state IN ({listed})
    GROUP BY p.state, bm.kldb, bm.berufenet_id, bm.berufenet_name
),
spellings (spelling, state) AS (VALUES {spellings}),
prefixes AS (
    SELECT kldb, substr(trim(kldb, :ws), 1, 2) AS prefix FROM (SELECT DISTINCT kldb FROM grains) codes
),
code_domains AS (
    -- The domain: the stripped code's first two characters, when both are digits.
    SELECT kldb, prefix AS domain_code FROM prefixes
    WHERE length(prefix) = 2 AND substr(prefix, 1, 1) IN {digits} AND substr(prefix, 2, 1) IN {digits}
)
SELECT s.state, d.domain_code, g.berufenet_id, g.berufenet_name, g.n, g.f7, g.f14
FROM grains g
JOIN spellings s ON s.spelling = g.stored_state
JOIN code_domains d ON d.kldb = g.kldb
"""


# The columns of a stored row that `SnapshotRow` holds, in its order: what the INSERT returns.
_RETURNED = (
    "state, domain_code, berufenet_id, berufenet_name, total_postings, fresh_7d, fresh_14d, national_avg, demand_ratio"
)


def _snapshot_sql(dialect: str, base: str) -> str:
    """The INSERT of one date's domain rows and profession rows, from `base` (a query with the columns of
    `_base_sql`, ~43k rows on 400k postings), returning the stored rows.

    Everything here runs on the grouped rows, never per posting. A profession's name is the one most of
    its postings carry: ranked over the ~5k (profession, name) pairs and joined back, not with window
    functions over all ~40k profession rows (0.3 s of the statement). Rounding is done in integers so
    both databases produce the same doubles as the Python rule (half-up to 4 decimals):
    round4(a / b) = floor((2 * a * 10000 + b) / (2 * b)) / 10000.
    """
    # Ties between names go to the smallest by code point, as in Python; PostgreSQL's default collation
    # is linguistic, "C" compares UTF-8 bytes, which orders like code points.
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    fence = "MATERIALIZED " if dialect == "postgresql" else ""
    return f"""
INSERT INTO demand_snapshots (snapshot_date, state, domain_code, berufenet_id, berufenet_name, total_postings,
                              fresh_7d, fresh_14d, national_avg, demand_ratio, computed_at)
WITH base AS {fence}({base}),
domains AS (
    SELECT state, domain_code,
           CAST(SUM(n) AS BIGINT) AS total, CAST(SUM(f7) AS BIGINT) AS f7, CAST(SUM(f14) AS BIGINT) AS f14
    FROM base GROUP BY state, domain_code
),
domain_rows AS (
    SELECT d.*, CAST(SUM(total) OVER (PARTITION BY domain_code) AS BIGINT) AS national FROM domains d
),
nationals AS (
    -- Professions with enough postings over all states, per domain.
    SELECT domain_code, berufenet_id, CAST(SUM(n) AS BIGINT) AS national
    FROM base WHERE berufenet_id <> ''
    GROUP BY domain_code, berufenet_id HAVING SUM(n) >= :min_postings
),
names AS (
    -- Postings per (profession, name) over all states and domains.
    SELECT berufenet_id, berufenet_name, CASE WHEN berufenet_name <> '' THEN 0 ELSE 1 END AS unnamed,
           SUM(n) AS name_n
    FROM base WHERE berufenet_id <> '' GROUP BY berufenet_id, berufenet_name
),
best AS (
    -- The name most postings carry (ties: the smallest); NULL when the profession has no name at all.
    SELECT berufenet_id, CASE WHEN unnamed = 0 THEN berufenet_name END AS best_name
    FROM (
        SELECT x.*, ROW_NUMBER() OVER (
                   PARTITION BY berufenet_id ORDER BY unnamed, name_n DESC, berufenet_name{collate}) AS place
        FROM names x
    ) ranked
    WHERE place = 1
),
professions AS (
    SELECT state, domain_code, berufenet_id,
           CAST(SUM(n) AS BIGINT) AS total, CAST(SUM(f7) AS BIGINT) AS f7, CAST(SUM(f14) AS BIGINT) AS f14
    FROM base WHERE berufenet_id <> '' GROUP BY state, domain_code, berufenet_id
)
SELECT :day, state, domain_code, NULL, NULL, total, f7, f14,
       CAST((2 * national * 10000 + :n_states) / (2 * :n_states) AS FLOAT) / 10000,
       CAST((2 * total * :n_states * 10000 + national) / (2 * national) AS FLOAT) / 10000,
       :now
FROM domain_rows
UNION ALL
SELECT :day, p.state, p.domain_code, p.berufenet_id, b.best_name, p.total, p.f7, p.f14,
       CAST((2 * n.national * 10000 + :n_states) / (2 * :n_states) AS FLOAT) / 10000,
       CAST((2 * p.total * :n_states * 10000 + n.national) / (2 * n.national) AS FLOAT) / 10000,
       :now
FROM professions p
JOIN nationals n ON n.domain_code = p.domain_code AND n.berufenet_id = p.berufenet_id
JOIN best b ON b.berufenet_id = p.berufenet_id
RETURNING {_RETURNED}
"""


def _tune_snapshot(conn: Connection) -> None:
    """PostgreSQL planner settings for the snapshot transaction only, on top of `_tune`.

    The grouping pass gets parallel workers only in a plain query (never in an INSERT ... SELECT, hence
    the temporary table), and even there the planner, expecting one group per posting (154k instead of
    45k), prices gathering the workers' rows above a serial plan; with these costs it picks the parallel
    plan, about 30 % faster even on a loaded 2-core machine. The temporary table has no statistics, so
    nested loops over it are ruled out; every join there is between a few thousand grouped rows.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL parallel_setup_cost = 0"))
        conn.execute(text("SET LOCAL parallel_tuple_cost = 0.001"))
        conn.execute(text("SET LOCAL enable_nestloop = off"))


def store_snapshot(
    engine: Engine,
    day: date,
    now: datetime,
    *,
    min_postings_per_profession: int,
    stored_states: Sequence[str | None],
    states: Sequence[str] = STATES,
) -> list[SnapshotRow]:
    """Replace exactly this date's rows in one transaction and return them as stored; other dates are history
    and stay.

    `stored_states` are distinct `postings.state` values (`distinct_stored_states`, or those of `active_summary`);
    their spellings of the Länder become the statement's lookup. On PostgreSQL the grouping pass is a
    `CREATE TEMP TABLE ... AS` (parallel, dropped at commit) and the INSERT reads it; SQLite runs both as
    one statement. A crash anywhere rolls back to the date's previous rows.
    """
    spellings = state_spellings(stored_states, states)
    params: dict[str, object] = {
        "ws": _WHITESPACE,
        "fresh_short": day - timedelta(days=FRESH_SHORT_DAYS - 1),
        "fresh_long": day - timedelta(days=FRESH_LONG_DAYS - 1),
        "end_of_day": end_of_day_utc(day),
        "n_states": len(states),
        "min_postings": min_postings_per_profession,
    }
    for i, (spelling, state) in enumerate(spellings.items()):
        params[f"s{i}"], params[f"c{i}"] = spelling, state
    dialect = engine.dialect.name
    base = _base_sql(dialect, len(spellings))
    base_types = (
        bindparam("fresh_short", type_=Date), bindparam("fresh_long", type_=Date), bindparam("end_of_day", type_=DateTime)
    )
    row_types = (bindparam("day", value=day, type_=Date), bindparam("now", value=now, type_=DateTime))
    with engine.begin() as conn:
        _tune(conn)
        _tune_snapshot(conn)
        if dialect == "postgresql":
            grouping = text(f"CREATE TEMP TABLE demand_base ON COMMIT DROP AS {base}")
            conn.execute(grouping.bindparams(row_types[0], *base_types), params)
            statement = text(_snapshot_sql(dialect, "SELECT * FROM demand_base")).bindparams(*row_types)
        else:
            statement = text(_snapshot_sql(dialect, base)).bindparams(*row_types, *base_types)
        conn.execute(delete(demand_snapshots).where(demand_snapshots.c.snapshot_date == day))
        return [_returned_row(*row) for row in conn.execute(statement, params)]


def _returned_row(*values: Any) -> SnapshotRow:
    """A row as the INSERT returned it. SQLite's RETURNING can hand back a whole REAL as an integer (8 for
    8.0, which the table itself reads back as 8.0), so the ratios are made floats again."""
    row = SnapshotRow(*values)
    avg, ratio = row.national_avg, row.demand_ratio
    return replace(row, national_avg=None if avg is None else float(avg), demand_ratio=None if ratio is None else float(ratio))



def load_snapshot(engine: Engine, day: date) -> list[SnapshotRow]:
    d = demand_snapshots
    query = select(
        d.c.state, d.c.domain_code, d.c.berufenet_id, d.c.berufenet_name, d.c.total_postings, d.c.fresh_7d,
        d.c.fresh_14d, d.c.national_avg, d.c.demand_ratio,
    ).where(d.c.snapshot_date == day)
    with engine.connect() as conn:
        return [SnapshotRow(*row) for row in conn.execute(query)]
