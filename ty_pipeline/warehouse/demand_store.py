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

from sqlalchemy import Engine, and_, delete, func, or_, select

from ty_pipeline.domain.demand import ActivePosting, SnapshotRow
from ty_pipeline.domain.states import STATES
from ty_pipeline.partitions import BERLIN
from ty_pipeline.warehouse.schema import berufenet_mappings, demand_snapshots, postings


def end_of_day_utc(day: date) -> datetime:
    """D+1 00:00 in Berlin as naive UTC, the form `invalidated_at` is stored in."""
    midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=BERLIN)
    return midnight.astimezone(UTC).replace(tzinfo=None)


def _active_on(day: date):  # type: ignore[no-untyped-def]
    return and_(
        postings.c.partition_date <= day,
        or_(postings.c.invalidated.is_(False), postings.c.invalidated_at >= end_of_day_utc(day)),
    )


def active_mapped_postings(engine: Engine, day: date) -> list[ActivePosting]:
    """Postings active on `day` with a profession mapping that has a KldB code."""
    bm = berufenet_mappings
    query = (
        select(postings.c.state, postings.c.partition_date, bm.c.kldb, bm.c.berufenet_id, bm.c.berufenet_name)
        .select_from(postings.join(bm, bm.c.posting_id == postings.c.posting_id))
        .where(_active_on(day), bm.c.kldb.isnot(None))
    )
    with engine.connect() as conn:
        return [
            ActivePosting(state=r.state, kldb=r.kldb, berufenet_id=r.berufenet_id,
                          berufenet_name=r.berufenet_name, published=r.partition_date)
            for r in conn.execute(query)
        ]


def active_counts(engine: Engine, day: date) -> tuple[int, dict[str, int]]:
    """(all active postings, mapped active postings per state among the 16 Länder), counted in SQL.

    Independent of the Python aggregation, so the consistency check compares two computations.
    """
    bm = berufenet_mappings
    with engine.connect() as conn:
        active = conn.execute(select(func.count()).select_from(postings).where(_active_on(day))).scalar_one()
        per_state = conn.execute(
            select(postings.c.state, func.count())
            .select_from(postings.join(bm, bm.c.posting_id == postings.c.posting_id))
            .where(_active_on(day), bm.c.kldb.isnot(None), postings.c.state.in_(STATES))
            .group_by(postings.c.state)
        ).all()
    return active, {state: count for state, count in per_state}


def replace_snapshot(engine: Engine, day: date, rows: Sequence[SnapshotRow], now: datetime) -> int:
    """Replace exactly this date's rows in one transaction; other dates are history and stay."""
    values = [
        {
            "snapshot_date": day,
            "state": r.state,
            "domain_code": r.domain_code,
            "berufenet_id": r.berufenet_id,
            "berufenet_name": r.berufenet_name,
            "total_postings": r.total_postings,
            "fresh_7d": r.fresh_7d,
            "fresh_14d": r.fresh_14d,
            "national_avg": r.national_avg,
            "demand_ratio": r.demand_ratio,
            "computed_at": now,
        }
        for r in rows
    ]
    with engine.begin() as conn:
        conn.execute(delete(demand_snapshots).where(demand_snapshots.c.snapshot_date == day))
        for start in range(0, len(values), 1000):
            conn.execute(demand_snapshots.insert(), values[start : start + 1000])
    return len(values)


def load_snapshot(engine: Engine, day: date) -> list[SnapshotRow]:
    d = demand_snapshots
    query = select(
        d.c.state, d.c.domain_code, d.c.berufenet_id, d.c.berufenet_name, d.c.total_postings, d.c.fresh_7d,
        d.c.fresh_14d, d.c.national_avg, d.c.demand_ratio,
    ).where(d.c.snapshot_date == day)
    with engine.connect() as conn:
        return [SnapshotRow(*row) for row in conn.execute(query)]
