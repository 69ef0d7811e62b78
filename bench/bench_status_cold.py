"""`ty-pipeline status` from a cold start, with a Dagster instance configured (issue 13: <= 1 s).

Builds issue 13's 400,000-posting warehouse on PostgreSQL (bench/synthetic_warehouse.py) and a Dagster
instance holding `--runs` runs, each with `--events` engine events and the run worker's start event, and
a few claimed `ollama` pool slots (one run alive, one whose worker is gone, one ended). Then it starts
`python -m ty_pipeline.cli status` as a fresh process `--repeat` times per arm, interleaved, and prints
the median wall time, CPU time and peak RSS of each:

* `no instance`: DAGSTER_HOME unset: the warehouse part alone.
* `instance, table reader`: the pool-slot section read straight from the instance's tables (what the
  command does for `storage: sqlite` / `storage: postgres`, ty_pipeline/pool_slot_tables.py).
* `instance, Dagster API` (baseline): the same section through `DagsterInstance`, as before; forced by
  running the command with the table reader switched off, i.e. what any other storage layout still gets.

Both instance layouts that ship are measured: `--instance sqlite` (the Quickstart's dagster.yaml) and
`--instance postgres` (the production dagster.yaml, DAGSTER_PG_URL at a throw-away schema).

Usage: `.venv/bin/python bench/bench_status_cold.py [--postings 400000] [--instance sqlite postgres]`
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
from dagster._core.events import EngineEventData  # noqa: E402
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus  # noqa: E402

from bench.synthetic_warehouse import build_postings_warehouse  # noqa: E402
from ty_pipeline.domain.clock import berlin_today  # noqa: E402
from ty_pipeline_tests.pg_schemas import pg_schema  # noqa: E402

QUICKSTART_YAML = ROOT / "deploy" / "quickstart" / "dagster.yaml"
PRODUCTION_YAML = ROOT / "dagster.yaml"
# The command as a fresh interpreter; the baseline arm switches the table reader off first.
STATUS = "import sys; from ty_pipeline import cli; sys.exit(cli.main(['status']))"
DAGSTER_API = ("import sys; from ty_pipeline import cli, cli_pools; "
               "cli_pools.locate_instance_tables = lambda home: None; sys.exit(cli.main(['status']))")


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    rss_mib: float


def fill_instance(home: Path, runs: int, events: int) -> tuple[int, int]:
    """Runs with engine events and three claimed slots; returns (runs, held slots)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.set_concurrency_slots("ollama", 4)
        run_ids = []
        for i in range(runs):
            run = instance.add_run(DagsterRun(job_name="enrich_partition", run_id=str(uuid.uuid4()),
                                              status=DagsterRunStatus.STARTED))
            pid = os.getpid() if i == runs - 1 else 100_000 + i  # the last run's worker is alive
            instance.report_engine_event(f"Started process for run (pid: {pid}).", run,
                                         EngineEventData.in_process(pid))
            for k in range(events):
                instance.report_engine_event(f"Executing steps using multiprocess executor ({k})", run)
            if i < runs - 3:
                instance.report_run_failed(run)  # history: most runs ended long ago
            run_ids.append(run.run_id)
        for run_id, step in zip(run_ids[-3:], ("posting_summaries", "skill_keywords", "ihl_scores"), strict=True):
            assert instance.event_log_storage.claim_concurrency_slot("ollama", run_id, step).is_claimed
        instance.report_run_failed(instance.get_run_by_id(run_ids[-3]))  # ended while holding its slot
    return runs, 3


def run_cold(code: str, env: dict[str, str], scratch: Path) -> Sample:
    # Under GNU time: the peak RSS of a child of this (large) process would report this process's, which a
    # fork carries across exec.
    timing = scratch / "time.txt"
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", str(timing), sys.executable, "-c", code],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0 or "cannot read pool slots" in done.stderr:
        raise SystemExit(f"status failed:\n{done.stdout}\n{done.stderr}")
    if env.get("DAGSTER_HOME") and "holds a slot but is NOT ALIVE" not in done.stdout:
        raise SystemExit(f"status did not report the dead slot holders:\n{done.stdout}\n{done.stderr}")
    user, system, rss_kib = timing.read_text().split()[-3:]
    return Sample(wall, float(user) + float(system), int(rss_kib) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, default=400_000)
    parser.add_argument("--runs", type=int, default=100, help="runs in the Dagster instance")
    parser.add_argument("--events", type=int, default=20, help="engine events per run")
    parser.add_argument("--repeat", type=int, default=7, help="cold starts per arm")
    parser.add_argument("--instance", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"])
    args = parser.parse_args()

    with ExitStack() as stack:
        url = stack.enter_context(pg_schema("bench_status_"))
        day = berlin_today()
        started = time.perf_counter()
        build_postings_warehouse(url, args.postings, today=day - timedelta(days=1),
                                 now=datetime.combine(day, datetime.min.time()) + timedelta(hours=2))
        print(f"built {args.postings:,} postings in {time.perf_counter() - started:.0f} s")
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_status_cold_")))
        base = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TY_WAREHOUSE_URL")}
        base.update({"PYTHONPATH": str(ROOT), "TY_WAREHOUSE_URL": url})
        arms: dict[str, tuple[str, dict[str, str]]] = {"no instance": (STATUS, base)}
        for layout in args.instance:
            home = tmp / layout
            home.mkdir()
            env = {**base, "DAGSTER_HOME": str(home)}
            if layout == "sqlite":
                shutil.copy(QUICKSTART_YAML, home / "dagster.yaml")
            else:
                shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
                env["DAGSTER_PG_URL"] = stack.enter_context(pg_schema("bench_status_dagster_"))
                os.environ["DAGSTER_PG_URL"] = env["DAGSTER_PG_URL"]
            started = time.perf_counter()
            runs, held = fill_instance(home, args.runs, args.events)
            print(f"{layout} instance: {runs} runs x {args.events + 1} engine events, {held} held slots "
                  f"({time.perf_counter() - started:.0f} s)")
            arms[f"{layout} instance, table reader"] = (STATUS, env)
            arms[f"{layout} instance, Dagster API"] = (DAGSTER_API, env)

        samples: dict[str, list[Sample]] = {name: [] for name in arms}
        for code, env in arms.values():  # one warm-up each: the first start pays the disk cache
            run_cold(code, env, tmp)
        for _ in range(args.repeat):
            for name, (code, env) in arms.items():  # interleaved, so a noisy moment hits every arm
                samples[name].append(run_cold(code, env, tmp))

        print(f"\n`ty-pipeline status` cold on {args.postings:,} postings (PostgreSQL warehouse), "
              f"median of {args.repeat} starts; goal <= 1 s")
        print(f"{'arm':<34} {'wall s':>7} {'min':>6} {'max':>6} {'CPU s':>6} {'RSS MiB':>8}")
        medians = {}
        for name, got in samples.items():
            wall = statistics.median(s.wall_s for s in got)
            medians[name] = wall
            print(f"{name:<34} {wall:>7.2f} {min(s.wall_s for s in got):>6.2f} {max(s.wall_s for s in got):>6.2f} "
                  f"{statistics.median(s.cpu_s for s in got):>6.2f} {max(s.rss_mib for s in got):>8.0f}")
        for layout in args.instance:
            ours, dagster = medians[f"{layout} instance, table reader"], medians[f"{layout} instance, Dagster API"]
            print(f"{layout}: table reader / Dagster API = {ours / dagster:.2f}; "
                  f"slot section adds {ours - medians['no instance']:+.2f} s to the warehouse part")


if __name__ == "__main__":
    main()
