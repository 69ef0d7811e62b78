"""Whether a run that holds a concurrency-pool slot is still alive, and why not.

A run killed with `kill -9` (or a machine that slept or rebooted) keeps its `ollama` pool slot: the
run record still says STARTED and nothing frees the slot until run monitoring gives up on the run.
With a pool limit of 1 every later LLM step waits "blocked by limit for pool ollama" meanwhile. The
status command names such runs so an operator can free the slot by hand. Pure: the caller reads the
run status and the run worker's process id from the Dagster instance.
"""

from __future__ import annotations

from dataclasses import dataclass

ENDED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
NEVER_STARTED = frozenset({"NOT_STARTED", "QUEUED", "MANAGED"})


@dataclass(frozen=True)
class HeldSlot:
    """A claimed slot of a concurrency pool and the verdict on the run holding it."""

    pool: str
    run_id: str
    step_key: str
    run_status: str | None
    worker_pid: int | None
    alive: bool
    reason: str


@dataclass(frozen=True)
class SlotHolderVerdict:
    alive: bool
    reason: str


def judge_slot_holder(status: str | None, worker_pid: int | None, pid_running: bool | None) -> SlotHolderVerdict:
    """Alive or not, from the run's status (None: the run record is gone) and its run worker process.

    `pid_running` is None when it cannot be told (no pid recorded, e.g. an in-process run, or another
    host); then a started run counts as alive, because freeing a live run's slot would let two LLM
    steps share one GPU slot.
    """
    if status is None:
        return SlotHolderVerdict(False, "its run record no longer exists")
    if status in ENDED:
        return SlotHolderVerdict(False, f"the run ended ({status})")
    if status in NEVER_STARTED:
        return SlotHolderVerdict(False, f"the run never started ({status})")
    if worker_pid is not None and pid_running is False:
        return SlotHolderVerdict(False, f"the run is {status} but its run worker process {worker_pid} is gone")
    return SlotHolderVerdict(True, f"the run is {status}")
