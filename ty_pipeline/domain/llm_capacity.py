"""How many postings the LLM hosts enrich per hour, and what that means for tonight (pure).

The per-run cap of the LLM step used to be a constant (300). It now follows measured throughput: every
`llm_enrichment` run records, per host, the calls it answered and the run's postings and wall time
(`warehouse/llm_throughput_store.py`). From the recent runs this module derives postings/hour per host
and in total, the cap that fits before the morning deadline, and the ETA of what is pending.

A "posting" here is a posting enriched by every selected asset: a run that computed 30 summaries, 30
skill lists and 30 IHL scores did 30 postings; a run of one asset counts its tasks with the weight of
that asset's calls (`POSTING_CALLS`), so a skills-only run is not mistaken for a fast night.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from ty_pipeline.domain.clock import BERLIN

DEADLINE = time(6, 0)  # enriched data is due at 06:00 Berlin (the replaced system's morning report)
FALLBACK_CAP = 300  # postings per run before any run has been measured (one GPU's share of a night)
# Happy-path calls per posting of each asset (README "LLM enrichment"): the weights of a lane's tasks.
POSTING_CALLS = {"posting_summaries": 3, "skill_keywords": 1, "ihl_scores": 3}
FULL_POSTING_CALLS = sum(POSTING_CALLS.values())


@dataclass(frozen=True)
class HostRun:
    """One host's share of one run."""

    host: str  # redacted URL
    slots: int
    calls: int
    busy_s: float


@dataclass(frozen=True)
class RunThroughput:
    """One `llm_enrichment` run: wall time from first to last task, posting-equivalents done."""

    finished_at: datetime  # naive UTC
    wall_s: float
    postings: float
    hosts: tuple[HostRun, ...]

    @property
    def calls(self) -> int:
        return sum(h.calls for h in self.hosts)


def posting_equivalents(tasks_done: dict[str, int]) -> float:
    """Tasks of each asset weighted by that asset's share of a full posting's calls."""
    return sum(POSTING_CALLS.get(lane, 1) * n for lane, n in tasks_done.items()) / FULL_POSTING_CALLS


@dataclass(frozen=True)
class HostRate:
    host: str
    slots: int
    postings_per_hour: float
    runs: int


def host_rates(runs: Sequence[RunThroughput]) -> list[HostRate]:
    """Postings/hour each host contributed over `runs`: its share of the calls times the runs' postings,
    over the runs' wall time. Runs too short to measure (no wall time) are left out."""
    postings: dict[str, float] = {}
    hours: dict[str, float] = {}
    slots: dict[str, int] = {}
    seen: dict[str, int] = {}
    for run in runs:
        if run.wall_s <= 0 or run.calls <= 0:
            continue
        for host in run.hosts:
            share = host.calls / run.calls
            postings[host.host] = postings.get(host.host, 0.0) + share * run.postings
            hours[host.host] = hours.get(host.host, 0.0) + run.wall_s / 3600
            slots[host.host] = host.slots
            seen[host.host] = seen.get(host.host, 0) + 1
    return [
        HostRate(host, slots[host], postings[host] / hours[host] if hours[host] > 0 else 0.0, seen[host])
        for host in sorted(postings)
    ]


def total_rate(runs: Sequence[RunThroughput]) -> float | None:
    """Postings/hour of the whole fleet over `runs`; None before any measured run."""
    measured = [r for r in runs if r.wall_s > 0 and r.postings > 0]
    if not measured:
        return None
    return sum(r.postings for r in measured) / (sum(r.wall_s for r in measured) / 3600)


def next_deadline(now: datetime) -> datetime:
    """The next 06:00 Berlin after `now` (aware)."""
    local = now.astimezone(BERLIN)
    deadline = datetime.combine(local.date(), DEADLINE, tzinfo=BERLIN)
    if deadline <= local:
        deadline = datetime.combine(local.date() + timedelta(days=1), DEADLINE, tzinfo=BERLIN)
    return deadline


def hours_left(now: datetime) -> float:
    return (next_deadline(now) - now.astimezone(BERLIN)).total_seconds() / 3600


def capacity_cap(rate_per_hour: float | None, now: datetime, *, share: float = 1.0) -> int:
    """Postings one run may take: what the measured rate finishes before the deadline (times `share`,
    the part of the window the LLM step gets), or the fallback before any measurement."""
    if rate_per_hour is None or rate_per_hour <= 0:
        return FALLBACK_CAP
    return max(1, int(rate_per_hour * hours_left(now) * share))


@dataclass(frozen=True)
class Eta:
    pending: int
    rate_per_hour: float | None
    hours_needed: float | None
    hours_left: float

    @property
    def before_deadline(self) -> bool | None:
        return None if self.hours_needed is None else self.hours_needed <= self.hours_left

    def text(self) -> str:
        if self.pending == 0:
            return "nothing pending"
        if self.hours_needed is None:
            return f"{self.pending} pending; no measured run yet, no ETA"
        verdict = "before" if self.before_deadline else "AFTER"
        return (f"{self.pending} pending at {self.rate_per_hour:.0f} postings/h: {_hours(self.hours_needed)}, "
                f"{verdict} the 06:00 deadline ({_hours(self.hours_left)} left)")


def eta(pending: int, rate_per_hour: float | None, now: datetime) -> Eta:
    needed = pending / rate_per_hour if rate_per_hour else None
    return Eta(pending, rate_per_hour, needed if pending else 0.0, hours_left(now))


def _hours(hours: float) -> str:
    minutes = int(round(hours * 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
