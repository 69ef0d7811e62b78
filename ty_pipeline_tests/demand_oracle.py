"""Today's (pre-SQL) demand snapshot, kept verbatim as the test oracle of the SQL implementation.

`compute_snapshot` is the Python aggregation the `demand_snapshots` asset ran until it moved into one
`INSERT ... SELECT` (ty_pipeline/warehouse/demand_store.py); `active_mapped_postings` is the query that
fed it and `replace_snapshot` the batched write after it. The equivalence tests compare the two row for
row; `bench/bench_demand.py` times both.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import Engine, delete, select

from ty_pipeline.domain.demand import (
    FRESH_LONG_DAYS,
    FRESH_SHORT_DAYS,
    MIN_POSTINGS_PER_PROFESSION,
    SnapshotRow,
)
from ty_pipeline.domain.states import STATES, canonical_state
from ty_pipeline.warehouse.demand_store import active_on
from ty_pipeline.warehouse.schema import berufenet_mappings, demand_snapshots, postings


@dataclass(frozen=True)
class ActivePosting:
    """A posting active on the snapshot date with a profession mapping."""

    state: str | None
    kldb: str | None
    berufenet_id: str | None
    berufenet_name: str | None
    published: date


@dataclass
class Snapshot:
    rows: list[SnapshotRow] = field(default_factory=list)
    counted: int = 0  # postings in the domain rows
    without_state: int = 0  # no state, or not one of the 16 Länder
    bad_kldb: int = 0  # KldB code whose first two characters are not digits

    @property
    def domain_rows(self) -> list[SnapshotRow]:
        return [r for r in self.rows if r.berufenet_id is None]

    @property
    def profession_rows(self) -> list[SnapshotRow]:
        return [r for r in self.rows if r.berufenet_id is not None]


def domain_code(kldb: str | None) -> str | None:
    """The KldB 2010 Berufsbereich+Berufshauptgruppe: the first two digits of the 5-digit code."""
    code = (kldb or "").strip()
    return code[:2] if len(code) >= 2 and code[:2].isdigit() else None


def round4(value: float) -> float:
    """Half-up to 4 decimals, as PostgreSQL `numeric(10,4)` did upstream (not Python's banker's rounding)."""
    return float(Decimal(repr(value)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def national_average(total: int, n_states: int = len(STATES)) -> float:
    return total / n_states


def demand_ratio(state_total: int, average: float) -> float | None:
    return None if average == 0 else round4(state_total / average)


@dataclass
class _Tally:
    total: int = 0
    fresh_7d: int = 0
    fresh_14d: int = 0

    def add(self, age_days: int) -> None:
        self.total += 1
        if 0 <= age_days < FRESH_SHORT_DAYS:
            self.fresh_7d += 1
        if 0 <= age_days < FRESH_LONG_DAYS:
            self.fresh_14d += 1


def compute_snapshot(
    postings: Iterable[ActivePosting],
    day: date,
    *,
    min_postings_per_profession: int = MIN_POSTINGS_PER_PROFESSION,
    states: Sequence[str] = STATES,
) -> Snapshot:
    """Rows for one snapshot date from the postings active on that date.

    Profession rows only for professions with at least `min_postings_per_profession` postings over all
    states; their name is the one most postings carry.
    """
    snapshot = Snapshot()
    domains: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    professions: dict[tuple[str, str, str], _Tally] = defaultdict(_Tally)
    names: dict[str, Counter[str]] = defaultdict(Counter)
    known_states = set(states)
    for posting in postings:
        state = canonical_state(posting.state)
        if state is None or state not in known_states:
            snapshot.without_state += 1
            continue
        domain = domain_code(posting.kldb)
        if domain is None:
            snapshot.bad_kldb += 1
            continue
        age = (day - posting.published).days
        snapshot.counted += 1
        domains[(state, domain)].add(age)
        if posting.berufenet_id:
            professions[(state, domain, posting.berufenet_id)].add(age)
            if posting.berufenet_name:
                names[posting.berufenet_id][posting.berufenet_name] += 1

    domain_totals: Counter[str] = Counter()
    for (_state, domain), tally in domains.items():
        domain_totals[domain] += tally.total
    for (state, domain), tally in sorted(domains.items()):
        avg = national_average(domain_totals[domain], len(states))
        snapshot.rows.append(
            SnapshotRow(state, domain, None, None, tally.total, tally.fresh_7d, tally.fresh_14d,
                        round4(avg), demand_ratio(tally.total, avg))
        )

    profession_totals: Counter[tuple[str, str]] = Counter()
    for (_state, domain, berufenet_id), tally in professions.items():
        profession_totals[(domain, berufenet_id)] += tally.total
    for (state, domain, berufenet_id), tally in sorted(professions.items()):
        national = profession_totals[(domain, berufenet_id)]
        if national < min_postings_per_profession:
            continue
        avg = national_average(national, len(states))
        snapshot.rows.append(
            SnapshotRow(state, domain, berufenet_id, _most_common(names.get(berufenet_id)), tally.total,
                        tally.fresh_7d, tally.fresh_14d, round4(avg), demand_ratio(tally.total, avg))
        )
    return snapshot


def _most_common(counter: Counter[str] | None) -> str | None:
    if not counter:
        return None
    return min(counter.items(), key=lambda item: (-item[1], item[0]))[0]




def active_mapped_postings(engine: Engine, day: date) -> list[ActivePosting]:
    """Postings active on `day` with a profession mapping that has a KldB code."""
    bm = berufenet_mappings
    query = (
        select(postings.c.state, postings.c.partition_date, bm.c.kldb, bm.c.berufenet_id, bm.c.berufenet_name)
        .select_from(postings.join(bm, bm.c.posting_id == postings.c.posting_id))
        .where(active_on(day), bm.c.kldb.isnot(None))
    )
    with engine.connect() as conn:
        return [
            ActivePosting(state=r.state, kldb=r.kldb, berufenet_id=r.berufenet_id,
                          berufenet_name=r.berufenet_name, published=r.partition_date)
            for r in conn.execute(query)
        ]


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
