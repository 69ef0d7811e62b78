"""Description-fetch leases: which run is fetching which posting's description right now.

Two runs of one partition (a manual rerun while the nightly run works, a retried backfill) used to
fetch every description twice. A run claims the postings it is about to fetch; a second run skips
postings another live run holds. A lease ends when its run releases it, when it expires (a run killed
with -9 releases nothing), or earlier when the Dagster instance reports the holding run finished.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, or_, select, update

from ty_pipeline.warehouse.schema import description_leases as leases
from ty_pipeline.warehouse.upsert import upsert

# Long enough for a slow batch between renewals; short enough that a killed run's postings come back
# within the hour even when the instance cannot tell that the run died.
LEASE_TTL = timedelta(minutes=30)


def other_holders(engine: Engine, posting_ids: Iterable[int], *, run_id: str, now: datetime,
                  chunk_size: int = 500) -> set[str]:
    """Runs other than `run_id` holding an unexpired lease on any of these postings."""
    ids = sorted(set(posting_ids))
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(ids), chunk_size):
            part = ids[start : start + chunk_size]
            found.update(conn.execute(
                select(leases.c.run_id).distinct().where(
                    leases.c.posting_id.in_(part), leases.c.run_id != run_id, leases.c.expires_at > now
                )
            ).scalars())
    return found


def claim(
    engine: Engine,
    posting_ids: Iterable[int],
    *,
    run_id: str,
    now: datetime,
    ttl: timedelta = LEASE_TTL,
    takeover_from: Collection[str] = (),
    chunk_size: int = 500,
) -> set[int]:
    """Claim postings for `run_id`; returns those it now holds.

    A posting is taken when nobody holds it, its lease expired, this run already holds it, or its holder
    is in `takeover_from` (runs the instance reports finished). The conditional upsert decides under the
    row lock, so two runs claiming at once never both win a posting.
    """
    ids = sorted(set(posting_ids))  # one lock order for every run: no deadlock between claimers
    held: set[int] = set()
    for start in range(0, len(ids), chunk_size):
        part = ids[start : start + chunk_size]
        rows = [{"posting_id": i, "run_id": run_id, "claimed_at": now, "expires_at": now + ttl} for i in part]
        conditions = [leases.c.expires_at <= now, leases.c.run_id == run_id]
        if takeover_from:
            conditions.append(leases.c.run_id.in_(sorted(takeover_from)))
        stmt = upsert(engine, leases, rows, keys=["posting_id"], update=["run_id", "claimed_at", "expires_at"],
                      where=or_(*conditions))
        with engine.begin() as conn:
            conn.execute(stmt)
            held.update(conn.execute(
                select(leases.c.posting_id).where(leases.c.posting_id.in_(part), leases.c.run_id == run_id)
            ).scalars())
    return held


def renew(engine: Engine, *, run_id: str, now: datetime, ttl: timedelta = LEASE_TTL) -> int:
    with engine.begin() as conn:
        return conn.execute(
            update(leases).where(leases.c.run_id == run_id).values(expires_at=now + ttl)
        ).rowcount


def release(engine: Engine, *, run_id: str) -> int:
    with engine.begin() as conn:
        return conn.execute(delete(leases).where(leases.c.run_id == run_id)).rowcount
