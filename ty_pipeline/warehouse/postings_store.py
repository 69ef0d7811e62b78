"""Writes and sweeps of the `postings` table: upserts, re-sightings and stale invalidation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    case,
    exists,
    false,
    func,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.sql.expression import ColumnCollection

from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.invalidation import (
    HELD_UNTIL_RECHECK,
    RECHECK_RULES,
    InvalidationReason,
    RecheckRules,
    StaleRules,
    aa_cutoffs,
    db_cutoff,
    recheck_due_at,
    sweep_allowed,
)
from ty_pipeline.domain.posting_record import (
    Origin,
    PostingRecord,
    Source,
    external_id_problem,
    shown_external_id,
)
from ty_pipeline.domain.text_clean import strip_unstorable
from ty_pipeline.domain.urls import redact_urls_in
from ty_pipeline.warehouse.schema import job_descriptions, posting_payloads, postings
from ty_pipeline.warehouse.upsert import bulk_upsert

# A re-sighting within this long of the recorded one is not written: the sweeps count in days, and a
# rerun of a partition must leave rows it did not change exactly as they were (no timestamp churn).
SEEN_RESOLUTION = timedelta(hours=1)
_HELD = sorted(str(r) for r in HELD_UNTIL_RECHECK)

# Columns a re-fetch refreshes. `first_seen_at` and `partition_date` are deliberately absent.
_REFRESHED = (
    "origin", "title", "employer", "beruf", "city", "postal_code", "state", "country", "latitude",
    "longitude", "external_url", "partner_url", "published_date", "first_published_date",
    "last_seen_at", "content_hash",
)
_PAYLOAD_UPDATED = ("content_hash", "raw_json", "updated_at")


@dataclass
class UpsertStats:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    resurrected: int = 0
    held_gone: int = 0  # listed again, but the source said "gone": stays invalidated until a re-check
    errors: int = 0
    error_messages: list[str] | None = None
    # Postings that could not be stored even on their own, as "source:external_id: reason".
    lost: list[str] = field(default_factory=list)
    # The same postings as example rows for the failing check: external id, title, reason.
    lost_rows: list[dict[str, object]] = field(default_factory=list)

    def add_error(self, message: str, count: int) -> None:
        self.errors += count
        self.error_messages = [*(self.error_messages or []), message][:10]


def _row(record: PostingRecord, partition_date: date, now: datetime) -> dict:
    return {
        "source": str(record.source),
        "external_id": record.external_id,
        "origin": str(record.origin),
        "title": record.title,
        "employer": record.employer,
        "beruf": record.beruf,
        "city": record.city,
        "postal_code": record.postal_code,
        "state": record.state,
        "country": record.country,
        "latitude": record.latitude,
        "longitude": record.longitude,
        "external_url": record.external_url,
        "partner_url": record.partner_url,
        "published_date": record.published_date,
        "first_published_date": record.first_published_date,
        "partition_date": partition_date,
        "first_seen_at": now,
        "last_seen_at": now,
        "content_hash": record.content_hash(),
        "invalidated": False,
        "invalidated_reason": None,
        "invalidated_at": None,
    }


def upsert_postings(
    engine: Engine,
    records: Sequence[PostingRecord],
    *,
    partition_date: date,
    now: datetime,
    chunk_size: int = 500,
) -> UpsertStats:
    """Insert new postings, refresh known ones, revalidate invalidated ones that were seen again.

    Each chunk is its own transaction. A chunk that fails is rolled back and retried row by row, so
    one unstorable posting costs only itself (issue #9: one NUL byte used to lose the whole day);
    such a posting is named in `stats.lost`, and the caller fails the partition for it. A posting whose
    id is too long to index (`external_id_problem`) is named there without being tried.
    """
    stats = UpsertStats()
    storable: list[PostingRecord] = []
    for record in records:
        # An id too long to index would fail its whole chunk on PostgreSQL (and be stored on SQLite): it is
        # refused here, alike on both, and costs only itself.
        problem = external_id_problem(record.external_id)
        if problem is None:
            storable.append(record)
        else:
            _count_lost(stats, record, problem)
    for start in range(0, len(storable), chunk_size):
        chunk = storable[start : start + chunk_size]
        try:
            _upsert_chunk(engine, chunk, partition_date, now, stats)
        except Exception:  # noqa: BLE001 - any database error: find the row(s) that caused it
            for record in chunk:
                try:
                    _upsert_chunk(engine, [record], partition_date, now, stats)
                except Exception as exc:  # noqa: BLE001 - this row is lost; the rest still lands
                    first_line = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
                    _count_lost(stats, record, redact_urls_in(first_line))
    return stats


def _count_lost(stats: UpsertStats, record: PostingRecord, reason: str) -> None:
    """Name a posting that could not be stored, with why, in the run's metadata, check and log."""
    # Names and reasons go to metadata and the event log: they must be storable too.
    key = strip_unstorable(f"{record.source}:{shown_external_id(record.external_id)}")
    reason = strip_unstorable(reason)[:300]
    stats.lost.append(f"{key}: {reason}")
    stats.lost_rows.append({"external_id": key, "title": strip_unstorable(record.title or ""), "problem": reason})
    stats.add_error(f"posting {key} could not be stored: {reason}", 1)


def _upsert_chunk(
    engine: Engine, chunk: Sequence[PostingRecord], partition_date: date, now: datetime, stats: UpsertStats
) -> None:
    """One transaction for `chunk`; counts into `stats` only after it committed."""
    rows = [_row(r, partition_date, now) for r in chunk]
    with engine.begin() as conn:
        before = _existing_state(conn, chunk)
        bulk_upsert(
            conn, postings, rows, keys=["source", "external_id"], update=_REFRESHED,
            extra_set=_revival_values(), where=lambda excluded: _needs_write(excluded, now),
        )
        _store_payloads(conn, chunk, rows, now)
    for row in rows:
        previous = before.get((row["source"], row["external_id"]))
        if previous is None:
            stats.new += 1
            continue
        old_hash, was_invalidated, reason = previous
        if was_invalidated and reason in HELD_UNTIL_RECHECK:
            stats.held_gone += 1
        elif was_invalidated:
            stats.resurrected += 1
        if old_hash == row["content_hash"]:
            stats.unchanged += 1
        else:
            stats.changed += 1


def _store_payloads(conn: Connection, chunk: Sequence[PostingRecord], rows: Sequence[dict[str, Any]],
                    now: datetime) -> None:
    """The chunk's raw payloads into `posting_payloads`, in the postings' transaction; a payload is
    rewritten only when the posting's content hash changed (a re-sighting writes nothing)."""
    ids = _posting_ids(conn, chunk)
    payloads: dict[int, dict[str, Any]] = {}
    for record, row in zip(chunk, rows, strict=True):
        posting_id = ids.get((row["source"], row["external_id"]))
        if posting_id is not None:  # the last copy of a key twice in one chunk wins, as in postings
            payloads[posting_id] = {
                "posting_id": posting_id, "content_hash": row["content_hash"],
                "raw_json": json.dumps(record.raw, ensure_ascii=False, sort_keys=True), "updated_at": now,
            }
    bulk_upsert(
        conn, posting_payloads, list(payloads.values()), keys=["posting_id"], update=_PAYLOAD_UPDATED,
        where=lambda excluded: posting_payloads.c.content_hash.is_distinct_from(excluded.content_hash),
    )


def _posting_ids(conn: Connection, chunk: Sequence[PostingRecord]) -> dict[tuple[str, str], int]:
    by_source: dict[str, list[str]] = {}
    for r in chunk:
        by_source.setdefault(str(r.source), []).append(r.external_id)
    found: dict[tuple[str, str], int] = {}
    for source, external_ids in by_source.items():
        query = select(postings.c.external_id, postings.c.posting_id).where(
            postings.c.source == source, postings.c.external_id.in_(sorted(set(external_ids))))
        for external_id, posting_id in conn.execute(query):
            found[(source, external_id)] = posting_id
    return found


def count_stored(engine: Engine, records: Sequence[PostingRecord], *, chunk_size: int = 500) -> dict[str, int]:
    """Per source, how many of `records` have a row in the table after this run's upsert.

    What the "fetched vs reported" check compares: rows that reached the warehouse, not API counts.
    Existence, not `last_seen_at`: an unchanged re-sighting is deliberately not rewritten.
    """
    by_source: dict[str, list[str]] = {}
    for r in records:
        by_source.setdefault(str(r.source), []).append(r.external_id)
    stored: dict[str, int] = {}
    with engine.connect() as conn:
        for source, ids in by_source.items():
            unique = sorted(set(ids))
            total = 0
            for start in range(0, len(unique), chunk_size):
                total += conn.execute(
                    select(func.count()).select_from(postings).where(
                        postings.c.source == source,
                        postings.c.external_id.in_(unique[start : start + chunk_size]),
                    )
                ).scalar_one()
            stored[source] = total
    return stored


def stored_keys(
    engine: Engine, keys: Iterable[tuple[str, str]], *, chunk_size: int = 500
) -> set[tuple[str, str]]:
    """Which of `keys` ((source, external_id)) have a row, valid or invalidated."""
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    found: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        for source, ids in by_source.items():
            unique = sorted(set(ids))
            for start in range(0, len(unique), chunk_size):
                query = select(postings.c.external_id).where(
                    postings.c.source == source, postings.c.external_id.in_(unique[start : start + chunk_size])
                )
                found.update((source, external_id) for (external_id,) in conn.execute(query))
    return found


def _held_reason() -> ColumnElement[bool]:
    """`invalidated_reason IN (held reasons)` spelt as `=` terms: an `IN` list is an expanding parameter,
    which the executemany of the bulk upsert cannot take."""
    return or_(*(postings.c.invalidated_reason == reason for reason in _HELD))


def _revival_values() -> dict:
    """A listing revives a posting that was only unseen; one the source declared gone stays as it is."""
    held = and_(postings.c.invalidated.is_(True), _held_reason())
    return {
        "invalidated": case((held, true()), else_=false()),
        "invalidated_reason": case((held, postings.c.invalidated_reason), else_=null()),
        "invalidated_at": case((held, postings.c.invalidated_at), else_=null()),
    }


def _revivable() -> ColumnElement[bool]:
    return and_(
        postings.c.invalidated.is_(True),
        or_(postings.c.invalidated_reason.is_(None), ~_held_reason()),
    )


def _needs_write(excluded: ColumnCollection[str, ColumnElement[Any]], now: datetime) -> ColumnElement[bool]:
    """Only rows with news are written: changed content, a sighting worth recording, or a revival."""
    return or_(
        postings.c.content_hash.is_distinct_from(excluded.content_hash),
        postings.c.last_seen_at < now - SEEN_RESOLUTION,
        _revivable(),
    )


def _existing_state(
    conn: Connection, chunk: Sequence[PostingRecord]
) -> dict[tuple[str, str], tuple[str | None, bool, str | None]]:
    found: dict[tuple[str, str], tuple[str | None, bool, str | None]] = {}
    by_source: dict[str, list[str]] = {}
    for r in chunk:
        by_source.setdefault(str(r.source), []).append(r.external_id)
    for source, ids in by_source.items():
        rows = conn.execute(
            select(
                postings.c.external_id, postings.c.content_hash, postings.c.invalidated,
                postings.c.invalidated_reason,
            ).where(postings.c.source == source, postings.c.external_id.in_(ids))
        )
        for ext_id, chash, invalidated, reason in rows:
            found[(source, ext_id)] = (chash, bool(invalidated), reason)
    return found


def touch_seen(
    engine: Engine, keys: Iterable[tuple[str, str]], *, now: datetime, chunk_size: int = 500
) -> tuple[int, int]:
    """Record that known postings (of other partitions) were listed. Returns (touched, resurrected).

    Revives postings that were only unseen; postings the source declared gone stay invalidated (the
    newer sighting makes them due for a detail re-check). Sightings within SEEN_RESOLUTION of the
    recorded one are not written.
    """
    by_source: dict[str, list[str]] = {}
    for source, ext_id in keys:
        by_source.setdefault(source, []).append(ext_id)
    touched = resurrected = 0
    with engine.begin() as conn:
        for source, ids in by_source.items():
            for start in range(0, len(ids), chunk_size):
                part = ids[start : start + chunk_size]
                where = and_(postings.c.source == source, postings.c.external_id.in_(part))
                resurrected += conn.execute(
                    update(postings)
                    .where(where, _revivable())
                    .values(invalidated=False, invalidated_reason=None, invalidated_at=None)
                ).rowcount
                touched += conn.execute(select(func.count()).select_from(postings).where(where)).scalar_one()
                conn.execute(
                    update(postings)
                    .where(where, postings.c.last_seen_at < now - SEEN_RESOLUTION)
                    .values(last_seen_at=now)
                )
    return touched, resurrected


@dataclass
class SweepResult:
    invalidated: int = 0
    skipped_reason: str | None = None


def sweep_stale_arbeitsagentur(engine: Engine, *, now: datetime, rules: StaleRules) -> SweepResult:
    """Jobsuche postings first seen over 30 days ago and unseen for 7 are gone (docs/domain_rules.md §9),
    unless that would hit more than half of the active ones.

    Call only after a complete Jobsuche fetch in this run: after a week of 403s, "unseen" means "not
    fetched", and the guard keeps a long outage from invalidating everything older than 30 days.
    """
    first_before, last_before = aa_cutoffs(now, rules)
    return _guarded_sweep(
        engine, Source.ARBEITSAGENTUR,
        and_(postings.c.first_seen_at < first_before, postings.c.last_seen_at < last_before),
        max_share=rules.aa_max_share,
        refusal="{candidates} of {active} active Jobsuche postings look stale; "
        "more than {share} suggests a fetch problem, so none were invalidated",
        values={"invalidated": True, "invalidated_reason": str(InvalidationReason.STALE_UNSEEN), "invalidated_at": now},
    )


def sweep_stale_deutsche_bank(engine: Engine, *, now: datetime, rules: StaleRules) -> SweepResult:
    """Deutsche Bank postings not listed for 2 days are removed, unless that would hit over half of them.

    Call only after a complete listing of the Deutsche Bank API in this run: otherwise "unseen" means
    "not fetched", not "removed".
    """
    return _guarded_sweep(
        engine, Source.DEUTSCHE_BANK, postings.c.last_seen_at < db_cutoff(now, rules),
        max_share=rules.db_max_share,
        refusal="{candidates} of {active} active Deutsche Bank postings look removed; "
        "more than {share} suggests an API problem, so none were invalidated",
        values={
            "invalidated": True, "invalidated_reason": str(InvalidationReason.REMOVED_FROM_SOURCE),
            "invalidated_at": now,
            # Listed again later, it is re-checked at once: the removal rests on absence, not on a 404.
            "recheck_after": now,
        },
    )


def _guarded_sweep(
    engine: Engine, source: Source, stale: ColumnElement[bool], *, max_share: float, refusal: str,
    values: dict[str, Any],
) -> SweepResult:
    """Invalidate the valid API postings of `source` matching `stale` with `values`, unless they are more
    than `max_share` of the active ones (`sweep_allowed`): then nothing changes and `refusal` (with
    {candidates}, {active} and {share}) says why. Counting and updating share one transaction."""
    active_api = and_(
        postings.c.source == str(source),
        postings.c.origin == str(Origin.API),
        postings.c.invalidated.is_(False),
    )
    with engine.begin() as conn:
        active = conn.execute(select(func.count()).select_from(postings).where(active_api)).scalar_one()
        candidates = conn.execute(select(func.count()).select_from(postings).where(active_api, stale)).scalar_one()
        if not sweep_allowed(candidates, active, max_share):
            return SweepResult(
                skipped_reason=refusal.format(candidates=candidates, active=active, share=f"{max_share:.0%}")
            )
        count = conn.execute(update(postings).where(active_api, stale).values(**values)).rowcount
    return SweepResult(invalidated=count)


def invalidate_posting(
    conn: Connection, posting_id: int, reason: InvalidationReason, now: datetime, rules: RecheckRules = RECHECK_RULES
) -> None:
    values: dict = {"invalidated": True, "invalidated_reason": str(reason), "invalidated_at": now}
    if reason in HELD_UNTIL_RECHECK:
        values["recheck_after"] = recheck_due_at(now, rules)
    conn.execute(update(postings).where(postings.c.posting_id == posting_id).values(**values))


def hold_revived_not_found(engine: Engine, *, now: datetime, rules: RecheckRules = RECHECK_RULES) -> int:
    """Invalidate again postings whose description fetch said "not found" but that are valid.

    Only older code produced these (a listing revived them); they counted as active in demand,
    completeness and status. Idempotent: a no-op once repaired.
    """
    jd = job_descriptions
    gone = exists().where(jd.c.posting_id == postings.c.posting_id, jd.c.status == str(DescriptionStatus.NOT_FOUND))
    with engine.begin() as conn:
        return conn.execute(
            update(postings)
            .where(postings.c.invalidated.is_(False), gone)
            .values(
                invalidated=True, invalidated_reason=str(InvalidationReason.NOT_FOUND_AT_SOURCE),
                invalidated_at=now, recheck_after=recheck_due_at(now, rules),
            )
        ).rowcount
