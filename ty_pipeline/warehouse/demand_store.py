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
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, DateTime, Engine, and_, bindparam, case, delete, false, func, or_, select, text

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
from ty_pipeline.partitions import BERLIN
from ty_pipeline.warehouse.schema import berufenet_mappings, demand_snapshots, postings

# What Python's str.strip() removes from a KldB code in practice (the ASCII whitespace).
_WHITESPACE = " \t\n\r\x0b\x0c"
_DIGITS = "('0','1','2','3','4','5','6','7','8','9')"


def end_of_day_utc(day: date) -> datetime:
    """D+1 00:00 in Berlin as naive UTC, the form `invalidated_at` is stored in."""
    midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=BERLIN)
    return midnight.astimezone(UTC).replace(tzinfo=None)


def active_on(day: date):  # type: ignore[no-untyped-def]
    return and_(
        postings.c.partition_date <= day,
        or_(postings.c.invalidated == false(), postings.c.invalidated_at >= end_of_day_utc(day)),
    )


def _code(kldb):  # type: ignore[no-untyped-def]
    return func.trim(kldb, _WHITESPACE)


def _has_domain(kldb):  # type: ignore[no-untyped-def]
    """SQL twin of "the stripped code starts with two digits" (NULL codes have none)."""
    code = _code(kldb)
    return and_(
        func.length(code) >= 2,
        func.substr(code, 1, 1).in_(list("0123456789")),
        func.substr(code, 2, 1).in_(list("0123456789")),
    )


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
    with engine.connect() as conn:
        tallies = [StateTally(r.state, r.active, r.mapped, r.valid) for r in conn.execute(query)]
    return summarize(tallies, states)


def _snapshot_sql(dialect: str, n_spellings: int) -> str:
    """One statement: the active mapped postings -> domain rows and profession rows of one date.

    Rounding is done in integers so both databases produce the same doubles as the Python rule
    (half-up to 4 decimals): round4(a / b) = floor((2 * a * 10000 + b) / (2 * b)) / 10000.
    """
    when = " ".join(f"WHEN :s{i} THEN :c{i}" for i in range(n_spellings))
    listed = ", ".join(f":s{i}" for i in range(n_spellings))
    # Ties between names go to the smallest by code point, as in Python; PostgreSQL's default collation
    # is linguistic, "C" compares UTF-8 bytes, which orders like code points.
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    code = "trim(bm.kldb, :ws)"
    # INSERT first: pysqlite reports no row count for a statement that starts with WITH.
    return f"""
INSERT INTO demand_snapshots (snapshot_date, state, domain_code, berufenet_id, berufenet_name, total_postings,
                              fresh_7d, fresh_14d, national_avg, demand_ratio, computed_at)
WITH base AS (
    SELECT CASE p.state {when} END AS state,
           substr({code}, 1, 2) AS domain_code,
           bm.berufenet_id AS berufenet_id,
           bm.berufenet_name AS berufenet_name,
           CASE WHEN p.partition_date >= :fresh_short THEN 1 ELSE 0 END AS f7,
           CASE WHEN p.partition_date >= :fresh_long THEN 1 ELSE 0 END AS f14
    FROM postings p
    JOIN berufenet_mappings bm ON bm.posting_id = p.posting_id
    WHERE p.partition_date <= :day
      AND (p.invalidated = false OR p.invalidated_at >= :end_of_day)
      AND p.state IN ({listed})
      AND length({code}) >= 2
      AND substr({code}, 1, 1) IN {_DIGITS}
      AND substr({code}, 2, 1) IN {_DIGITS}
),
domains AS (
    SELECT state, domain_code, COUNT(*) AS total, SUM(f7) AS f7, SUM(f14) AS f14
    FROM base GROUP BY state, domain_code
),
domain_rows AS (
    SELECT d.*, CAST(SUM(total) OVER (PARTITION BY domain_code) AS BIGINT) AS national FROM domains d
),
professions AS (
    SELECT state, domain_code, berufenet_id, COUNT(*) AS total, SUM(f7) AS f7, SUM(f14) AS f14
    FROM base WHERE berufenet_id <> '' GROUP BY state, domain_code, berufenet_id
),
profession_rows AS (
    SELECT r.*, CAST(SUM(total) OVER (PARTITION BY domain_code, berufenet_id) AS BIGINT) AS national
    FROM professions r
),
names AS (
    SELECT berufenet_id, berufenet_name, COUNT(*) AS n
    FROM base WHERE berufenet_id <> '' AND berufenet_name <> ''
    GROUP BY berufenet_id, berufenet_name
),
best_names AS (
    SELECT berufenet_id, berufenet_name,
           ROW_NUMBER() OVER (PARTITION BY berufenet_id ORDER BY n DESC, berufenet_name{collate}) AS rank
    FROM names
)
SELECT :day, state, domain_code, NULL, NULL, total, f7, f14,
       CAST((2 * national * 10000 + :n_states) / (2 * :n_states) AS FLOAT) / 10000,
       CAST((2 * total * :n_states * 10000 + national) / (2 * national) AS FLOAT) / 10000,
       :now
FROM domain_rows
UNION ALL
SELECT :day, r.state, r.domain_code, r.berufenet_id, b.berufenet_name, r.total, r.f7, r.f14,
       CAST((2 * r.national * 10000 + :n_states) / (2 * :n_states) AS FLOAT) / 10000,
       CAST((2 * r.total * :n_states * 10000 + r.national) / (2 * r.national) AS FLOAT) / 10000,
       :now
FROM profession_rows r
LEFT JOIN best_names b ON b.berufenet_id = r.berufenet_id AND b.rank = 1
WHERE r.national >= :min_postings
"""


def write_snapshot(
    engine: Engine,
    day: date,
    now: datetime,
    *,
    min_postings_per_profession: int,
    stored_states: Sequence[str | None],
    states: Sequence[str] = STATES,
) -> int:
    """Replace exactly this date's rows in one transaction; other dates are history and stay.

    `stored_states` are the distinct `postings.state` values (from `active_summary`); their spellings of
    the Länder become the statement's lookup.
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
    statement = text(_snapshot_sql(engine.dialect.name, len(spellings))).bindparams(
        bindparam("day", value=day, type_=Date),
        bindparam("fresh_short", type_=Date),
        bindparam("fresh_long", type_=Date),
        bindparam("end_of_day", type_=DateTime),
        bindparam("now", value=now, type_=DateTime),
    )
    with engine.begin() as conn:
        conn.execute(delete(demand_snapshots).where(demand_snapshots.c.snapshot_date == day))
        return conn.execute(statement, params).rowcount


def load_snapshot(engine: Engine, day: date) -> list[SnapshotRow]:
    d = demand_snapshots
    query = select(
        d.c.state, d.c.domain_code, d.c.berufenet_id, d.c.berufenet_name, d.c.total_postings, d.c.fresh_7d,
        d.c.fresh_14d, d.c.national_avg, d.c.demand_ratio,
    ).where(d.c.snapshot_date == day)
    with engine.connect() as conn:
        return [SnapshotRow(*row) for row in conn.execute(query)]
