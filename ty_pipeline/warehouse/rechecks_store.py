"""Detail re-checks of postings the source declared gone but a later listing still carried.

A detail 404 (or Deutsche Bank dropping a posting from a complete listing) wins over a listing, because
the Jobsuche search index lags behind the detail endpoint by days. A posting listed again after it was
invalidated becomes due for one more detail call once `recheck_after` has passed; only a successful
call revives it, and after `RecheckRules.max_rechecks` calls it stays invalidated for good
(docs/domain_rules.md §9).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, and_, or_, update

from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.invalidation import HELD_UNTIL_RECHECK, RECHECK_RULES, RecheckRules, recheck_due_at
from ty_pipeline.warehouse.descriptions_store import (
    DescriptionOutcome,
    PendingDescription,
    pending_query,
    read_pending,
    save_description,
)
from ty_pipeline.warehouse.schema import postings

# A re-check that finds text, or the partner board the text lives on, proves the posting exists.
REVIVING = {DescriptionStatus.OK, DescriptionStatus.TOO_SHORT, DescriptionStatus.EXTERNAL_PARTNER}


def due_rechecks(
    engine: Engine, *, now: datetime, rules: RecheckRules = RECHECK_RULES, limit: int = 200
) -> list[PendingDescription]:
    """Held postings of any partition, listed again since they were invalidated, whose re-check is due.

    Any partition: the nightly run only materializes yesterday, so a posting of an older day would
    otherwise never be re-checked.
    """
    query = (
        pending_query()
        .where(
            postings.c.invalidated.is_(True),
            postings.c.invalidated_reason.in_(sorted(str(r) for r in HELD_UNTIL_RECHECK)),
            postings.c.invalidated_at.is_not(None),
            postings.c.last_seen_at > postings.c.invalidated_at,  # listed again since
            postings.c.rechecks < rules.max_rechecks,
            or_(postings.c.recheck_after.is_(None), postings.c.recheck_after <= now),
        )
        .order_by(postings.c.last_seen_at.desc(), postings.c.posting_id.desc())
        .limit(limit)
    )
    return read_pending(engine, query, recheck=True)


def save_recheck(
    engine: Engine, pending: PendingDescription, outcome: DescriptionOutcome, now: datetime,
    rules: RecheckRules = RECHECK_RULES,
) -> bool:
    """Record one re-check; returns True when it revived the posting.

    Success: the description is saved first and the posting revived after, so a crash in between leaves
    a posting that is still due and simply re-checked again. Anything else (404, transient error) counts
    as a re-check and keeps the posting invalidated with its original reason and date.
    """
    revived = outcome.status in REVIVING
    if revived:
        save_description(engine, pending, outcome, now)
    values: dict = {"rechecks": postings.c.rechecks + 1}
    if revived:
        values.update(invalidated=False, invalidated_reason=None, invalidated_at=None, recheck_after=None)
    else:
        values["recheck_after"] = recheck_due_at(now, rules)
    with engine.begin() as conn:
        conn.execute(
            update(postings)
            .where(and_(postings.c.posting_id == pending.posting_id, postings.c.invalidated.is_(True)))
            .values(**values)
        )
    return revived
