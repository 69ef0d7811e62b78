"""The pool-slot part of `ty-pipeline`: who holds pool slots (`ollama`, `job_apis`; in `status`) and `free-slots RUN_ID`.

Kept apart from the warehouse status so the Dagster instance is only opened when asked for:
`--dagster-home DIR` or `DAGSTER_HOME`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from ty_pipeline.domain.slot_holders import HeldSlot
from ty_pipeline.domain.urls import redact_urls_in
from ty_pipeline.pool_slot_tables import check_instance_home, locate_instance_tables, read_held_slots


def add_dagster_home_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dagster-home",
        default=None,
        help="Dagster instance directory whose pool slots to inspect (default: $DAGSTER_HOME; unset: skipped)",
    )


def _home(args: argparse.Namespace) -> str | None:
    return args.dagster_home or os.environ.get("DAGSTER_HOME") or None


def pool_slots(args: argparse.Namespace, err: TextIO) -> list[dict[str, Any]] | None:
    """Every held pool slot as a dict, or None when no instance is configured or it cannot be read."""
    home = _home(args)
    if home is None:
        return None
    try:
        slots = _read_held_slots(home)
    except Exception as exc:  # any reason the instance is unreadable is reported, not raised
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        err.write(f"ty-pipeline status: cannot read pool slots from {home}: {redact_urls_in(first)}\n")
        return None
    return [
        {"pool": s.pool, "run_id": s.run_id, "step_key": s.step_key, "run_status": s.run_status,
         "worker_pid": s.worker_pid, "alive": s.alive, "reason": s.reason}
        for s in slots
    ]


def _read_held_slots(home: str) -> list[HeldSlot]:
    """Straight from the instance's tables when its storage is one we follow (no Dagster import, which alone
    would cost the status command its one-second budget), else through Dagster's API."""
    check_instance_home(home)
    tables = locate_instance_tables(home)
    if tables is not None:
        return read_held_slots(tables)
    from ty_pipeline.pool_slots import held_slots, open_instance  # imports Dagster: ~1 s

    with open_instance(home) as instance:
        return held_slots(instance)


def render_pool_slots(slots: list[dict[str, Any]]) -> str:
    lines = ["", "Pool slots (Dagster instance)"]
    if not slots:
        lines.append("  no slot is held")
    for s in slots:
        state = "holds a slot" if s["alive"] else "holds a slot but is NOT ALIVE"
        lines.append(f"  pool {s['pool']}: run {s['run_id']} (step {s['step_key']}) {state}: {s['reason']}")
    dead = sorted({s["run_id"] for s in slots if not s["alive"]})
    for run_id in dead:
        lines.append(f"  free it: ty-pipeline free-slots {run_id}")
    return "\n".join(lines) + "\n"


def add_free_slots_command(commands: Any) -> None:
    free = commands.add_parser(
        "free-slots",
        help="free the pool slots a dead run still holds",
        description="Free every concurrency-pool slot held by RUN_ID, as run monitoring does for ended runs. "
        "Refused while the run looks alive (use --force if you know it is not).",
    )
    free.add_argument("run_id")
    add_dagster_home_argument(free)
    free.add_argument("--force", action="store_true", help="free even if the run looks alive")


def run_free_slots(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    home = _home(args)
    if home is None:
        err.write("ty-pipeline free-slots: no Dagster instance: pass --dagster-home or set DAGSTER_HOME\n")
        return 2
    from ty_pipeline.pool_slots import free_run_slots, held_slots, open_instance

    try:
        instance_cm = open_instance(home)
    except FileNotFoundError as exc:
        err.write(f"ty-pipeline free-slots: {exc}\n")
        return 2
    with instance_cm as instance:
        mine = [s for s in held_slots(instance) if s.run_id == args.run_id]
        if not mine:
            out.write(f"run {args.run_id} holds no pool slot\n")
            return 0
        if any(s.alive for s in mine) and not args.force:
            err.write(f"ty-pipeline free-slots: run {args.run_id} looks alive ({mine[0].reason}); "
                      "not freed (terminate it in the UI first, or pass --force)\n")
            return 1
        freed = free_run_slots(instance, args.run_id)
    out.write(f"freed {freed} slot(s) of run {args.run_id} in pool(s) {', '.join(sorted({s.pool for s in mine}))}\n")
    return 0
