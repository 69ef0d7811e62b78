"""Set-based counts behind `ty-pipeline status`: per asset and partition, rows by saved status.

Each asset costs three statements: one GROUP BY over its in-scope postings (LEFT JOIN to its table, so a
missing row counts as pending), one GROUP BY over the rows its time column puts in the throughput
window, and the distinct partitions of those rows (embeddings sometimes a fourth, see `_embedding_counts`). The database returns at most partitions x statuses rows; Python only maps those few groups
through `ty_pipeline.domain.status_registry`. That keeps the command at interactive speed on a warehouse of
100,000 postings on both SQLite and PostgreSQL (see bench/bench_status.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    Connection,
    Engine,
    Integer,
    Row,
    Subquery,
    and_,
    case,
    func,
    inspect,
    literal,
    or_,
    select,
)
from sqlalchemy.sql import ColumnElement, FromClause, Select

from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.embedding_text import MIN_EMBED_CHARS, embedding_text, skip_reason
from ty_pipeline.domain.status_registry import ASSETS, AssetStatusSpec, Backlog, Outcome, Scope, Tally
from ty_pipeline.warehouse.schema import (
    demand_snapshots,
    embeddings,
    job_descriptions,
    metadata,
    posting_embeddings,
    posting_summaries,
    postings,
)

_TEXT_STATUSES = (str(DescriptionStatus.OK), str(DescriptionStatus.TOO_SHORT))
UNKNOWN_MARK = "(unknown status)"  # suffix in `by_status` of words the registry does not know


@dataclass
class AssetStatus:
    """One asset's counts over the recent partitions and its recent throughput."""

    spec: AssetStatusSpec
    built: bool
    missing_tables: list[str] = field(default_factory=list)
    partitions: dict[date, Tally] = field(default_factory=dict)  # newest first
    finished_in_window: int = 0
    window_hours: float = 0.0
    today: date | None = None
    active_days: set[date] = field(default_factory=set)  # partitions with rows written in the window

    @property
    def totals(self) -> Tally:
        total = Tally()
        for tally in self.partitions.values():
            total.done += tally.done
            total.failed += tally.failed
            total.retryable += tally.retryable
            total.pending += tally.pending
            for status, n in tally.by_status.items():
                total.by_status[status] = total.by_status.get(status, 0) + n
        return total

    @property
    def per_hour(self) -> float:
        return self.finished_in_window / self.window_hours if self.window_hours > 0 else 0.0

    @property
    def backlog(self) -> Backlog:
        """Pending work split into what a job will do (today's partition, partitions being processed) and not."""
        scheduled = today = unscheduled = 0
        for day, tally in self.partitions.items():
            if day == self.today:
                today += tally.pending
                scheduled += tally.pending
            elif day in self.active_days:
                scheduled += tally.pending
            else:
                unscheduled += tally.pending
        return Backlog(scheduled=scheduled, today=today, unscheduled=unscheduled, retryable=self.totals.retryable,
                       finished_in_window=self.finished_in_window, window_hours=self.window_hours)

    @property
    def eta_seconds(self) -> float | None:
        return self.backlog.eta_seconds


@dataclass
class StatusReport:
    today: date
    days: list[date]  # newest first
    now: datetime  # naive UTC, as the time columns are stored
    window_hours: float
    llm_sources: tuple[str, ...]
    assets: list[AssetStatus]


def collect_status(
    engine: Engine,
    *,
    today: date,
    days: int,
    now: datetime,
    window_hours: float,
    llm_sources: tuple[str, ...],
    assets: list[str] | None = None,
) -> StatusReport:
    """Counts for the partitions `today - days + 1 .. today` (plus any later ones that hold rows).

    Read-only: a warehouse whose tables do not exist yet reports those assets as not built instead of
    creating anything.
    """
    since = today - timedelta(days=days - 1)
    day_list = [today - timedelta(days=i) for i in range(days)]
    cutoff = now - timedelta(hours=window_hours)
    existing = set(inspect(engine).get_table_names())
    results: list[AssetStatus] = []
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # A dozen sub-second reads: compiling them (JIT) costs more than it saves. This transaction only.
            conn.exec_driver_sql("SET LOCAL jit = off")
        for name in assets or list(ASSETS):
            spec = ASSETS[name]
            missing = [t for t in spec.tables if t not in existing]
            status = AssetStatus(spec=spec, built=not missing, missing_tables=missing, window_hours=window_hours,
                                 today=today)
            results.append(status)
            if missing:
                continue
            if spec.scope == Scope.SNAPSHOT_DATE:
                counts = _snapshot_counts(conn, since)
            else:
                counts = _posting_counts(conn, spec, since, llm_sources)
            tallies = {d: Tally() for d in day_list}
            for day, outcome, label, n in counts:
                tallies.setdefault(day, Tally()).add(outcome, label, n)
            if spec.scope == Scope.SNAPSHOT_DATE:
                # A day without postings has nothing to snapshot: not pending, however long it stays so.
                with_postings = _days_with_postings(conn, since)
                for day, tally in tallies.items():
                    if tally.total == 0 and day in with_postings:
                        tally.add(Outcome.PENDING, "missing", 1)
            status.partitions = dict(sorted(tallies.items(), reverse=True))
            status.finished_in_window = _finished_since(conn, spec, cutoff)
            status.active_days = _active_days(conn, spec, cutoff, since)
    return StatusReport(today, day_list, now, window_hours, llm_sources, results)


# -- in-scope populations ---------------------------------------------------------------------------------


def _embedding_text_expr() -> ColumnElement:
    """SQL twin of `embedding_text` before normalisation: the passed summary, else a usable description."""
    description = case((job_descriptions.c.status.in_(_TEXT_STATUSES), job_descriptions.c.description))
    return func.coalesce(func.nullif(posting_summaries.c.summary, ""), description)


def _has_current_embedding() -> ColumnElement:
    """The view's `has_embedding`: a current link whose vector is stored (correlated EXISTS)."""
    pe = posting_embeddings
    return (
        select(literal(1))
        .select_from(pe.join(embeddings, and_(embeddings.c.text_hash == pe.c.text_hash, embeddings.c.model == pe.c.model)))
        .where(pe.c.posting_id == postings.c.posting_id, pe.c.is_current.is_(True))
        .exists()
    )


def _embedded_flag(conn: Connection, source: FromClause, since: date) -> tuple[FromClause, ColumnElement]:
    """`source` extended as needed, and a condition true for postings with a current stored embedding.

    The same rule in the form each backend runs well. SQLite probes the link index per posting with the
    correlated EXISTS. PostgreSQL turns that EXISTS into a hash over every current link of every
    partition (cost growing with history, and high enough to trigger JIT compilation); a LEFT JOIN to the
    window's linked posting ids keeps it to the shown partitions.
    """
    if conn.dialect.name != "postgresql":
        return source, _has_current_embedding()
    pe, linked_posting = posting_embeddings, postings.alias("linked_posting")
    linked = (
        select(pe.c.posting_id)
        .select_from(
            pe.join(embeddings, and_(embeddings.c.text_hash == pe.c.text_hash, embeddings.c.model == pe.c.model)).join(
                linked_posting, linked_posting.c.posting_id == pe.c.posting_id
            )
        )
        .where(linked_posting.c.partition_date >= since, pe.c.is_current.is_(True))
        .distinct()
        .subquery("linked")
    )
    return source.outerjoin(linked, linked.c.posting_id == postings.c.posting_id), linked.c.posting_id.is_not(None)


def _population(spec: AssetStatusSpec, since: date, llm_sources: tuple[str, ...]) -> tuple[FromClause, list]:
    """FROM clause and WHERE conditions of the asset's in-scope postings since `since`."""
    p, jd = postings, job_descriptions
    source: FromClause = p
    where: list = [p.c.partition_date >= since]
    if spec.scope != Scope.ALL_POSTINGS:
        where.append(p.c.invalidated.is_(False))
    if spec.scope == Scope.LLM_POSTINGS:
        # What the LLM assets can summarise: a fetched text (`too_short` and partner postings are skipped).
        source = source.join(jd, jd.c.posting_id == p.c.posting_id)
        where += [p.c.source.in_(llm_sources), jd.c.status == str(DescriptionStatus.OK)]
    elif spec.scope == Scope.TITLED_POSTINGS:
        # What the mapper can classify: a title, or failing that the `beruf` label Jobsuche attaches.
        where.append(or_(func.length(func.trim(p.c.title)) > 0, func.length(func.trim(p.c.beruf)) > 0))
    return source, where


def _row_columns(spec: AssetStatusSpec, source: FromClause) -> tuple[FromClause, ColumnElement, ColumnElement]:
    """The asset's status word and attempts-exhausted flag per in-scope posting."""
    if spec.scope == Scope.ALL_POSTINGS:
        return source, case((postings.c.invalidated.is_(True), "invalidated"), else_="valid"), literal(0)
    table = metadata.tables[spec.table]
    source = source.outerjoin(table, table.c.posting_id == postings.c.posting_id)
    return source, table.c.status, _exhausted(spec)


def _exhausted(spec: AssetStatusSpec) -> ColumnElement:
    """1 where a row's retries are used up (`attempts >= max_attempts`), else 0."""
    table = metadata.tables[spec.table]
    return case((table.c.attempts >= spec.max_attempts, 1), else_=0) if spec.max_attempts else literal(0)


Count = tuple[date, Outcome, str, int]


def _posting_counts(conn: Connection, spec: AssetStatusSpec, since: date, llm_sources: tuple[str, ...]) -> list[Count]:
    if spec.scope == Scope.EMBEDDABLE_POSTINGS:
        return _embedding_counts(conn, since)
    source, where = _population(spec, since, llm_sources)
    source, status, exhausted = _row_columns(spec, source)
    inner = (
        select(
            postings.c.partition_date.label("day"),
            status.label("status"),
            exhausted.label("exhausted"),
        )
        .select_from(source)
        .where(*where)
    )
    counts: list[Count] = []
    for day, word, exhausted_flag, n in _group_counts(conn, inner, materialize=False):
        outcome = spec.classify(word, exhausted=bool(exhausted_flag))
        counts.append((day, outcome, _label(word, bool(exhausted_flag), spec), n))
    return counts


def _label(word: str | None, exhausted: bool, spec: AssetStatusSpec) -> str:
    """How a group is named in `by_status`: the saved word, marked when its retries are used up."""
    if word is None:
        return "no_row"
    if not spec.knows(word):
        return f"{word} {UNKNOWN_MARK}"
    if exhausted and word in spec.retryable:
        return f"{word} (attempts used up)"
    return word


def _embedding_counts(conn: Connection, since: date) -> list[Count]:
    """Eligible postings per partition: embedded (current link to a stored vector) or pending.

    Measuring a text's length means reading all of it (3 kB on average, out of line on both backends),
    so it is measured only for postings without a current embedding: a linked posting was eligible when
    the embedder linked it, and only up to 2 x MIN_EMBED_CHARS characters: PostgreSQL then decompresses
    just that prefix of a TOASTed description (a 16,000-posting day not yet embedded: 0.43 s -> 0.11 s).
    Length is bucketed in steps of MIN_EMBED_CHARS in the same pass: bucket 0 is too short, 2 is
    eligible, and bucket 1 (150-299 raw characters) is re-checked with the embedder's own normalisation,
    because collapsing whitespace can take such a text under 150.
    """
    p, jd, ps = postings, job_descriptions, posting_summaries
    source: FromClause = p.outerjoin(jd, jd.c.posting_id == p.c.posting_id).outerjoin(ps, ps.c.posting_id == p.c.posting_id)
    valid = [p.c.partition_date >= since, p.c.invalidated.is_(False)]
    text_len = func.length(func.substr(_embedding_text_expr(), 1, 2 * MIN_EMBED_CHARS), type_=Integer)
    source, embedded = _embedded_flag(conn, source, since)
    inner = select(
        p.c.partition_date.label("day"),
        case((embedded, -1), else_=text_len // MIN_EMBED_CHARS).label("band"),
    ).select_from(source).where(*valid)
    grouped = _group_counts(conn, inner)
    counts: list[Count] = []
    borderline = False
    for day, band, n in grouped:
        if band == -1:
            counts.append((day, Outcome.DONE, "embedded", n))
        elif band is not None and band >= 1:
            counts.append((day, Outcome.PENDING, "no_row", n))
            borderline = borderline or band == 1
    if not borderline:
        return counts
    query = (
        select(p.c.partition_date, ps.c.summary, jd.c.description, jd.c.status)
        .select_from(source)
        .where(*valid, ~embedded, text_len < 2 * MIN_EMBED_CHARS, text_len >= MIN_EMBED_CHARS)
    )
    for day, summary, description, status in conn.execute(query):
        if skip_reason(embedding_text(summary, description if status in _TEXT_STATUSES else None)) is not None:
            counts.append((day, Outcome.PENDING, "no_row", -1))
    return counts


def _days_with_postings(conn: Connection, since: date) -> set[date]:
    query = select(postings.c.partition_date).where(postings.c.partition_date >= since).distinct()
    return {day for (day,) in conn.execute(query)}


def _snapshot_counts(conn: Connection, since: date) -> list[Count]:
    ds = demand_snapshots
    query = select(ds.c.snapshot_date).where(ds.c.snapshot_date >= since).group_by(ds.c.snapshot_date)
    return [(day, Outcome.DONE, "computed", 1) for (day,) in conn.execute(query)]


# -- throughput -------------------------------------------------------------------------------------------


def _finished_since(conn: Connection, spec: AssetStatusSpec, cutoff: datetime) -> int:
    """Rows that reached a final outcome (done or failed) since `cutoff`, from any partition.

    Work on older partitions counts too: it is the same workers' capacity. Retryable failures are not
    finished work and do not count.
    """
    table = metadata.tables[spec.table]
    when = table.c[spec.time_column]
    if spec.scope == Scope.SNAPSHOT_DATE:
        query = select(func.count(func.distinct(table.c.snapshot_date))).where(when >= cutoff)
        return int(conn.execute(query).scalar_one())
    if spec.scope == Scope.ALL_POSTINGS:
        return int(conn.execute(select(func.count()).where(when >= cutoff).select_from(table)).scalar_one())
    if spec.scope == Scope.EMBEDDABLE_POSTINGS:
        query = select(func.count(func.distinct(table.c.posting_id))).where(when >= cutoff, table.c.is_current.is_(True))
        return int(conn.execute(query).scalar_one())
    inner = select(table.c.status.label("status"), _exhausted(spec).label("exhausted")).where(when >= cutoff)
    return sum(
        n
        for word, exhausted_flag, n in _group_counts(conn, inner)
        if spec.classify(word, exhausted=bool(exhausted_flag)) in (Outcome.DONE, Outcome.FAILED)
    )


def _active_days(conn: Connection, spec: AssetStatusSpec, cutoff: datetime, since: date) -> set[date]:
    """Shown partitions with rows of this asset written since `cutoff`: a run or backfill is working on them.

    Without Dagster (the status command must not start it) this is the evidence that a job will do a
    partition's pending work; the ETA covers only those partitions and today's. Reads only the window's
    rows through the time-column index, joined to their postings by primary key.
    """
    table = metadata.tables[spec.table]
    when = table.c[spec.time_column]
    if spec.scope == Scope.ALL_POSTINGS:
        return set()  # a fetched posting is done by definition: nothing is ever pending
    if spec.scope == Scope.SNAPSHOT_DATE:
        query = select(table.c.snapshot_date).where(when >= cutoff, table.c.snapshot_date >= since).distinct()
    else:
        query = (
            select(postings.c.partition_date)
            .select_from(table.join(postings, postings.c.posting_id == table.c.posting_id))
            .where(when >= cutoff, postings.c.partition_date >= since)
            .distinct()
        )
    return {day for (day,) in conn.execute(query)}


def _group_counts(conn: Connection, inner: Select, *, materialize: bool = True) -> list[Row[Any]]:
    """`inner`'s rows counted per distinct combination of all its columns.

    Labels are grouped in an outer select, so GROUP BY names plain columns on both backends. With
    `materialize`, SQLite gets the inner select as a materialized CTE: flattened, it evaluates an EXISTS
    once for the group key and again for the output (it never treats two subqueries as the same
    expression), and it prefers an index that serves the GROUP BY (status) over one that serves the WHERE
    (a time column), scanning a whole table to count an hour of rows. Plain joins group faster flattened.
    PostgreSQL plans the plain subquery well either way.
    """
    rows: CTE | Subquery
    if materialize and conn.dialect.name == "sqlite" and (conn.dialect.server_version_info or (0,)) >= (3, 35):
        rows = inner.cte("status_rows").prefix_with("MATERIALIZED")
    else:
        rows = inner.subquery("status_rows")
    columns = list(rows.c)
    return list(conn.execute(select(*columns, func.count()).group_by(*columns)))
