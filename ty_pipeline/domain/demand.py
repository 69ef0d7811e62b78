"""Demand snapshot arithmetic: postings per state x KldB domain and per state x profession.

Differences from the replaced `compute_demand_snapshot.py` (docs/domain_rules.md §8.1), on purpose:

* `national_avg` is the mean over all 16 Länder, a state without postings counting as 0. Upstream
  averaged over the states present only, which inflated the average of rare domains and pushed their
  ratios towards 1 (a domain with postings in one state only had ratio 1.0 there instead of 16).
* Freshness is measured by publication date (the posting's partition date: its first publication as
  first seen) relative to the snapshot date, not by `first_seen_at` relative to "now". That makes a
  snapshot of a past date reproducible and unaffected by when a backfill fetched the posting.
  `fresh_7d` = published on the snapshot date or the 6 days before it; `fresh_14d` likewise 14 days.

States with no posting in a domain (or profession) get no row; readers treat a missing row as 0.
No Dagster and no SQL here: the caller selects the active postings.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from ty_pipeline.domain.states import STATES, canonical_state

MIN_POSTINGS_PER_PROFESSION = 20
FRESH_SHORT_DAYS = 7
FRESH_LONG_DAYS = 14


@dataclass(frozen=True)
class ActivePosting:
    """A posting active on the snapshot date with a profession mapping."""

    state: str | None
    kldb: str | None
    berufenet_id: str | None
    berufenet_name: str | None
    published: date


@dataclass(frozen=True)
class SnapshotRow:
    state: str
    domain_code: str
    berufenet_id: str | None  # None on domain rows
    berufenet_name: str | None
    total_postings: int
    fresh_7d: int
    fresh_14d: int
    national_avg: float | None
    demand_ratio: float | None


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


def consistency_problems(rows: Sequence[SnapshotRow], mapped_active_by_state: dict[str, int]) -> list[str]:
    """What the `snapshot_sums_consistent` check reports; empty when the stored rows add up.

    Per state and domain, the profession rows never sum to more than the domain row (professions under
    the threshold are left out, so less is normal); per state, the domain rows sum to exactly the
    mapped active postings counted independently; fresh counts never exceed totals.
    """
    problems: list[str] = []
    domain_total: dict[tuple[str, str], int] = {}
    profession_sum: Counter[tuple[str, str]] = Counter()
    state_sum: Counter[str] = Counter()
    for r in rows:
        if not (0 <= r.fresh_7d <= r.fresh_14d <= r.total_postings):
            problems.append(f"{r.state}/{r.domain_code}/{r.berufenet_id}: fresh counts exceed the total")
        if r.berufenet_id is None:
            domain_total[(r.state, r.domain_code)] = r.total_postings
            state_sum[r.state] += r.total_postings
        else:
            profession_sum[(r.state, r.domain_code)] += r.total_postings
    for key, total in sorted(profession_sum.items()):
        if total > domain_total.get(key, 0):
            problems.append(f"{key[0]}/{key[1]}: professions sum to {total} > domain total {domain_total.get(key, 0)}")
    for state in sorted(set(state_sum) | set(mapped_active_by_state)):
        if state_sum.get(state, 0) != mapped_active_by_state.get(state, 0):
            problems.append(
                f"{state}: domain rows sum to {state_sum.get(state, 0)}, "
                f"but {mapped_active_by_state.get(state, 0)} mapped active postings"
            )
    return problems
