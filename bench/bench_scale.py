"""Benchmark of a production-size day on PostgreSQL (issue #13 item 7; a script, not a test).

Builds the 400,000-posting warehouse of bench/synthetic_warehouse.py in a fresh PostgreSQL schema (dropped
afterwards), with its 90 partitions ending the day before Berlin's today, and serves a new day of 16,000
Jobsuche postings (16 Länder by population, ~10 % partner-hosted) and their details from the loopback fake
of ty_pipeline_tests/fakes/jobsuche_server.py. Then it runs each step the way production does, in its own
process, and measures time, rows/s, CPU and peak RSS (the step process and everything it waited for, from
`wait4`):

* `postings` and `job_descriptions` of the new day, `demand_snapshots` of it, and optionally
  `posting_embeddings` (`--with-embeddings`): `python -m dagster asset materialize -m ty_pipeline.definitions`;
* `ty-pipeline status`, cold (`python -m ty_pipeline.cli status`: interpreter, imports and the queries).

Each step is set against a plain-SQL floor measured in the same run: COPY of the rows the step wrote into
an empty copy of their table with its indexes (postings, job_descriptions, posting_embeddings), the
GROUP BY state, domain of demand (serial, as an `INSERT ... SELECT` runs), a `count(*)` of postings for
status. The `postings` step also reports its own storing cost per 1,000 rows (metadata
`store_ms_per_1000`, `store_cpu_ms_per_1000`), which is printed next to the COPY floor per 1,000 rows.

The request pacing of the `jobsuche` resource is lifted by run config (the fake needs no politeness;
`--polite` keeps the resource defaults, 30 requests/s), so the time is the pipeline's own.

Usage: `python bench/bench_scale.py [--postings 400000] [--day 16000] [--with-embeddings] [--polite]`.
`TY_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/test) names the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic_warehouse import STATE_WEIGHTS, build_postings_warehouse, demand_floor, pg_schema  # noqa: E402
from ty_pipeline.domain.clock import berlin_today  # noqa: E402
from ty_pipeline.domain.states import STATES  # noqa: E402
from ty_pipeline.resources.jobsuche import JobsucheResource  # noqa: E402
from ty_pipeline.warehouse.engine import get_engine  # noqa: E402
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche, make_v6_item  # noqa: E402

TITLES = ["Pflegefachkraft (m/w/d)", "Softwareentwickler/in Python", "Lagerhelfer (m/w/d) Vollzeit",
          "Kaufmann/-frau für Büromanagement", "Elektroniker/in Energie- und Gebäudetechnik",
          "Berufskraftfahrer CE (m/w/d)", "Erzieher/in Kita", "Vertriebsmitarbeiter Innendienst (m/w/d)",
          "IT-Administrator (m/w/d)", "Koch/Köchin", "Produktionshelfer (m/w/d) Schichtarbeit",
          "Steuerfachangestellte/r", "Mechatroniker/in Instandhaltung", "Reinigungskraft (m/w/d) Teilzeit"]
FIRMS = ["Nordlicht Dienstleistungen GmbH", "Muster & Söhne KG", "Klinikum Beispielstadt gGmbH",
         "Personalservice Adecco-Beispiel GmbH", "Stadtwerke Musterhausen", "Bäckerei Krume e.K."]
# The jobsuche resource's pacing is politeness towards the real API; against the fake it would only
# measure the configured rate. Unlimited here: a rate no step reaches, the default 6 requests in flight.
# Only knobs the resource has are set, so the bench survives a change in how pacing is configured.
NO_PAUSES = {"requests_per_s": 100_000.0, "burst": 1000, "page_delay_s": 0.0, "detail_delay_s": 0.0}


@dataclass
class Step:
    name: str
    rows: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    floor_s: float
    floor_label: str
    ok: bool


def serve_day(fake: FakeJobsuche, day: date, n: int, seed: int = 16) -> None:
    rng = random.Random(seed)
    for i in range(n):
        state = rng.choices(STATES, STATE_WEIGHTS)[0]
        title = rng.choice(TITLES)
        item = make_v6_item(
            f"{20000 + i % 900}-{1200000000 + i}-S", title, published=day, state=state,
            city=state.split("-")[0], plz=f"{rng.randint(1067, 99998):05d}", firma=rng.choice(FIRMS),
            hauptberuf=title.split(" (")[0], externe_url=f"https://partner.example/job/{i}" if rng.random() < 0.1 else None,
        )
        fake.add(item, state=state)


def run_step(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, bool]:
    """(wall s, CPU s, peak RSS MiB, success) of one child process, the processes it waited for included.

    Through `/usr/bin/time`: a child forked straight from this (large) process would report this
    process's RSS as its own peak, since Linux carries the high-water mark across fork and exec."""
    usage = log.with_suffix(".time")
    with log.open("ab") as out:
        code = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(usage), *argv], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    wall, user, system, max_kib = usage.read_text().split()[-4:]  # a failed child adds a line before them
    return float(wall), float(user) + float(system), int(max_kib) / 1024, code == 0


def materialize(asset: str, day: date, config: Path, env: dict[str, str], log: Path) -> tuple[float, float, float, bool]:
    return run_step([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ty_pipeline.definitions",
                     "--select", asset, "--partition", day.isoformat(), "-c", str(config)], env, log)


def copy_floor(url: str, table: str, where: str, params: dict) -> tuple[float, int]:
    """Seconds to COPY the rows `where` selects from `table` into an empty copy of it (indexes included)."""
    engine = get_engine(url)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        buffer = io.StringIO()
        cur.copy_expert(cur.mogrify(f"COPY (SELECT * FROM {table} WHERE {where}) TO STDOUT", params).decode(), buffer)
        rows = buffer.getvalue().count("\n")
        cur.execute(f"CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")
        raw.commit()
        buffer.seek(0)
        started = time.perf_counter()
        cur.copy_expert(f"COPY floor_{table} FROM STDIN", buffer)
        raw.commit()
        seconds = time.perf_counter() - started
        cur.execute(f"DROP TABLE floor_{table}")
        raw.commit()
    finally:
        raw.close()
    return seconds, rows


def scalar(url: str, sql: str, **params: object) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def count_floor(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    rows = scalar(url, "SELECT count(*) FROM postings")
    return time.perf_counter() - started, rows


def latest_metadata(home: Path, asset: str) -> dict:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        if event is None or event.asset_materialization is None:
            return {}
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=400_000, help="postings in the warehouse before the day")
    parser.add_argument("--day", type=int, default=16_000, help="postings served for the new day")
    parser.add_argument("--with-embeddings", action="store_true", help="also time posting_embeddings (slow on CPU)")
    parser.add_argument("--polite", action="store_true", help="keep the resource's pauses between requests")
    args = parser.parse_args()
    today = berlin_today()
    day = today - timedelta(days=1)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp, pg_schema() as url, FakeJobsuche(today=today) as fake:
        home, log, config = Path(tmp) / "dagster_home", Path(tmp) / "steps.log", Path(tmp) / "run_config.yaml"
        home.mkdir()
        started = time.perf_counter()
        build_postings_warehouse(url, args.postings, today=day - timedelta(days=1),
                                 now=datetime.combine(day, datetime.min.time()) + timedelta(hours=2))
        size = scalar(url, "SELECT pg_total_relation_size('postings')") / 2**20
        print(f"built {args.postings:,} postings (postings table {size:.0f} MiB) in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        serve_day(fake, day, args.day)
        print(f"serving {args.day:,} postings for {day} from the fake Jobsuche ({time.perf_counter() - started:.1f} s)")

        knobs = {} if args.polite else {k: v for k, v in NO_PAUSES.items() if k in JobsucheResource.model_fields}
        config.write_text(json.dumps({"resources": {"jobsuche": {"config": knobs}}} if knobs else {}))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(home), "TY_WAREHOUSE_URL": url,
               "TY_AA_BASE_URL": fake.base_url, "TY_SOURCES": "arbeitsagentur", "HF_HUB_OFFLINE": "1",
               "TY_STEP_MAX_RETRIES": "0"}
        on_day = {"day": day}
        of_day = "posting_id IN (SELECT posting_id FROM postings WHERE partition_date = %(day)s)"

        wall, cpu, rss, ok = materialize("postings", day, config, env, log)
        floor, rows = copy_floor(url, "postings", "partition_date = %(day)s", on_day)
        steps.append(Step("postings", rows, wall, cpu, rss, floor, "COPY of the day's rows", ok))
        meta = latest_metadata(home, "postings")

        wall, cpu, rss, ok = materialize("job_descriptions", day, config, env, log)
        floor, rows = copy_floor(url, "job_descriptions", of_day, on_day)
        steps.append(Step("job_descriptions", rows, wall, cpu, rss, floor, "COPY of the day's rows", ok))

        if args.with_embeddings:
            wall, cpu, rss, ok = materialize("posting_embeddings", day, config, env, log)
            floor, rows = copy_floor(url, "posting_embeddings", of_day, on_day)
            steps.append(Step("posting_embeddings", rows, wall, cpu, rss, floor, "COPY of the day's links", ok))

        wall, cpu, rss, ok = materialize("demand_snapshots", day, config, env, log)
        rows = scalar(url, "SELECT count(*) FROM demand_snapshots WHERE snapshot_date = :day", day=day)
        started = time.perf_counter()
        demand_floor(url, day, parallel=False)
        steps.append(Step("demand_snapshots", rows, wall, cpu, rss, time.perf_counter() - started,
                          "GROUP BY state, domain (serial)", ok))

        wall, cpu, rss, ok = run_step([sys.executable, "-m", "ty_pipeline.cli", "status", "--warehouse-url", url],
                                      env, log)
        floor, rows = count_floor(url)
        steps.append(Step("status (cold CLI)", rows, wall, cpu, rss, floor, "count(*) of postings", ok))

        print(f"\n{'step':<20} {'rows':>8} {'time s':>8} {'rows/s':>8} {'CPU s':>7} {'peak RSS':>9} "
              f"{'floor s':>8} {'x floor':>8}  floor")
        for s in steps:
            flag = "" if s.ok else "  FAILED (see the log)"
            print(f"{s.name:<20} {s.rows:>8,} {s.wall_s:>8.1f} {s.rows / s.wall_s:>8,.0f} {s.cpu_s:>7.1f} "
                  f"{s.peak_rss_mib:>6.0f} MiB {s.floor_s:>8.3f} {s.wall_s / s.floor_s:>8.0f}  {s.floor_label}{flag}")
        if meta.get("store_ms_per_1000") is not None:
            postings_floor = steps[0].floor_s * 1000 * 1000 / max(steps[0].rows, 1)
            print(f"\npostings: storing {meta.get('store_seconds')} s for the day = {meta['store_ms_per_1000']} ms "
                  f"per 1,000 rows ({meta.get('store_cpu_ms_per_1000')} ms CPU); COPY floor {postings_floor:.1f} ms "
                  f"per 1,000 rows -> {meta['store_ms_per_1000'] / postings_floor:.1f} x floor")
        for asset, figures in (("postings", meta), ("job_descriptions", latest_metadata(home, "job_descriptions"))):
            if figures.get("requests_arbeitsagentur"):
                print(f"{asset}: Jobsuche requests {json.dumps(figures['requests_arbeitsagentur'])}")
        if not all(s.ok for s in steps):
            print(f"\nstep output: {log}")
            print(log.read_text()[-5000:])
            sys.exit("a step failed")


if __name__ == "__main__":
    main()
