"""Demand snapshot rules: postings per state x KldB domain and per state x profession.

The counting itself runs in the warehouse (ty_pipeline/warehouse/demand_store.py, `store_snapshot`);
this module holds the rules it follows, the row type, and the Python side of the check.

Differences from the replaced `compute_demand_snapshot.py` (docs/domain_rules.md §8.1), on purpose:

* `national_avg` is the mean over all 16 Länder, a state without postings counting as 0. Upstream
  averaged over the states present only, which inflated the average of rare domains and pushed their
  ratios towards 1 (a domain with postings in one state only had ratio 1.0 there instead of 16).
* Freshness is measured by publication date (the posting's partition date: its first publication as
  first seen) relative to the snapshot date, not by `first_seen_at` relative to "now". That makes a
  snapshot of a past date reproducible and unaffected by when a backfill fetched the posting.
  `fresh_7d` = published on the snapshot date or the 6 days before it; `fresh_14d` likewise 14 days.

A posting is counted when its state is one of the 16 Länder under any API spelling (`canonical_state`)
and its KldB code, stripped, starts with two digits (the domain). Profession rows only for professions
with at least `min_postings_per_profession` postings over all states; their name is the one most postings
carry (ties: the smallest by code point). Averages and ratios are rounded half-up to 4 decimals, as
PostgreSQL `numeric(10,4)` did upstream. States with no posting in a domain (or profession) get no row;
readers treat a missing row as 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ty_pipeline.domain.states import STATES, canonical_state

MIN_POSTINGS_PER_PROFESSION = 20
FRESH_SHORT_DAYS = 7
FRESH_LONG_DAYS = 14


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


@dataclass(frozen=True)
class StateTally:
    """Active postings of one stored `state` value (any spelling), as counted in the warehouse."""

    state: str | None
    active: int  # active on the snapshot date
    mapped: int  # ... with a profession mapping that has a KldB code
    valid_domain: int  # ... whose KldB code yields a domain


@dataclass(frozen=True)
class ActiveSummary:
    active: int  # all active postings
    counted: int  # postings in the domain rows
    without_state: int  # mapped, but no state or not one of the 16 Länder
    bad_kldb: int  # mapped to a Land, but the KldB code yields no domain
    # Per Land (every stored spelling folded), the mapped postings whose KldB code yields a domain: what its
    # domain rows must sum to, counted apart from the snapshot statement (the check's independent count).
    mapped_by_state: dict[str, int]
    stored_states: tuple[str | None, ...]  # the distinct `state` values of the active postings


def state_spellings(stored: Iterable[str | None], states: Sequence[str] = STATES) -> dict[str, str]:
    """Stored `state` values -> the Land they name, for the values naming one of `states`.

    The SQL cannot fold spellings itself (`canonical_state` folds umlauts and Unicode), so the distinct
    stored values are folded here and handed to the statement as a lookup. Every name in `states` maps
    to itself, so the lookup is never empty.
    """
    known = set(states)
    spellings = {state: state for state in states}
    for value in stored:
        if value is None:
            continue
        canonical = canonical_state(value)
        if canonical in known:
            spellings[value] = canonical
    return spellings


def summarize(tallies: Iterable[StateTally], states: Sequence[str] = STATES) -> ActiveSummary:
    tallies = list(tallies)
    spellings = state_spellings((t.state for t in tallies), states)
    counted = without_state = bad_kldb = 0
    mapped_by_state: Counter[str] = Counter()
    for t in tallies:
        if t.state is None or t.state not in spellings:
            without_state += t.mapped
            continue
        counted += t.valid_domain
        bad_kldb += t.mapped - t.valid_domain
        if t.valid_domain:
            # Under any spelling: `BAYERN` (Jobsuche v6) is counted in Bayern's domain rows too.
            mapped_by_state[spellings[t.state]] += t.valid_domain
    return ActiveSummary(
        sum(t.active for t in tallies), counted, without_state, bad_kldb, dict(mapped_by_state),
        tuple(t.state for t in tallies),
    )


def consistency_problems(
    rows: Sequence[SnapshotRow], mapped_active_by_state: dict[str, int]
) -> list[str]:
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


STRONGEST_PER_STATE = 3
STRONGEST_MAX_ROWS = 48  # 16 Länder x 3: the table on the asset page stays one screen


def strongest_demand(
    rows: Iterable[SnapshotRow], per_state: int = STRONGEST_PER_STATE, limit: int = STRONGEST_MAX_ROWS
) -> list[SnapshotRow]:
    """The professions in highest demand relative to the other Länder: per state the `per_state` profession
    rows with the highest `demand_ratio` (ties: more postings, then name), states in alphabetical order,
    at most `limit` rows. Domain rows and rows without a ratio are not candidates."""
    by_state: dict[str, list[SnapshotRow]] = {}
    for row in rows:
        if row.berufenet_id is not None and row.demand_ratio is not None:
            by_state.setdefault(row.state, []).append(row)
    out: list[SnapshotRow] = []
    for state in sorted(by_state):
        ranked = sorted(by_state[state],
                        key=lambda r: (-(r.demand_ratio or 0.0), -r.total_postings, r.berufenet_name or "", r.berufenet_id))
        out += ranked[:per_state]
    return out[:limit]


def strongest_demand_rows(rows: Sequence[SnapshotRow]) -> list[dict[str, object]]:
    """The table rows an analyst reads: state, profession, postings, fresh, the Länder mean and the ratio."""
    return [
        {"state": r.state, "profession": r.berufenet_name or r.berufenet_id, "id": r.berufenet_id,
         "postings": r.total_postings, "fresh 7d": r.fresh_7d, "mean of the Länder": r.national_avg,
         "demand_ratio": r.demand_ratio}
        for r in rows
    ]
