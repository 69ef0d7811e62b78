"""How long a day's Jobsuche details take at the configured pace (issue #13: 16,000 details in <= 10 min).

Serves N postings (spread over the 16 states) from the loopback fake Jobsuche with zero added latency,
stores them with the real `postings` asset (listing unpaced: not what is measured), then materializes
the real `job_descriptions` asset with the `jobsuche` resource at its defaults (only `base_url` set),
so every detail call goes through the per-source token bucket and in-flight cap. Prints the step's
seconds, the requests / configured / achieved rate from its metadata, the floor N / requests_per_s, and
the time extrapolated to 16,000 details. `--unpaced` also runs the same step with the bucket opened
wide (same in-flight cap): the cost of the machine itself, measured in the same run.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_ratelimit.py [--postings 2000] [--unpaced]
      [--requests-per-s 30] [--max-in-flight 6]
The warehouse is a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ty_pipeline.assets.descriptions import job_descriptions  # noqa: E402
from ty_pipeline.assets.postings import postings  # noqa: E402
from ty_pipeline.domain.clock import berlin_today  # noqa: E402
from ty_pipeline.domain.states import STATES  # noqa: E402
from ty_pipeline.resources.jobsuche import JobsucheResource  # noqa: E402
from ty_pipeline.warehouse.engine import ensure_schema, get_engine  # noqa: E402
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche, make_detail, make_v6_item  # noqa: E402
from ty_pipeline_tests.helpers import resources_for  # noqa: E402

TARGET_DAY_SIZE = 16_000
DESCRIPTION = ("**Ihre Aufgaben**\n- Planung und Steuerung von Projekten im Team\n- Abstimmung mit Kunden\n\n"
               "**Ihr Profil**\n- Abgeschlossene Ausbildung oder Studium\n- Sehr gute Deutschkenntnisse")


def fill(fake: FakeJobsuche, count: int, day: Any) -> None:
    for i in range(count):
        state = STATES[i % len(STATES)]
        refnr = f"10001-{1000000000 + i}-S"
        item = make_v6_item(refnr, f"Projektleiter/in {i} (m/w/d)", published=day, state=state,
                            city=state.split("-")[0], plz=f"{10000 + i % 89999:05d}")
        fake.add(item, state=state, detail=make_detail(item, f"{DESCRIPTION}\nReferenz {i}"))


def step(warehouse_url: str, fake: FakeJobsuche, day: Any, jobsuche: JobsucheResource) -> tuple[float, dict[str, Any]]:
    resources = resources_for(warehouse_url, aa_url=fake.base_url, sources="arbeitsagentur", jobsuche=jobsuche)
    started = time.perf_counter()
    result = dg.materialize([job_descriptions], partition_key=day.isoformat(), resources=resources)
    seconds = time.perf_counter() - started
    (mat,) = result.asset_materializations_for_node("job_descriptions")
    return seconds, {k: v.value for k, v in mat.metadata.items()}


def report(label: str, count: int, seconds: float, meta: dict[str, Any], rate: float | None) -> None:
    figures = meta.get("requests_arbeitsagentur") or {}
    print(f"\n{label}")
    print(f"  details fetched ok      {meta['ok']:>8} of {count}")
    print(f"  step seconds            {seconds:>8.1f}")
    print(f"  requests                {figures.get('requests')}")
    print(f"  configured              {figures.get('configured')}")
    print(f"  achieved req/s          {figures.get('achieved_requests_per_s')}")
    print(f"  max in flight seen      {figures.get('max_in_flight_seen')}")
    if rate:
        floor = count / rate
        print(f"  floor N / rate          {floor:>8.1f} s  (step / floor = {seconds / floor:.2f})")
    extrapolated = seconds * TARGET_DAY_SIZE / count
    print(f"  16,000 details (linear) {extrapolated:>8.0f} s = {extrapolated / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postings", type=int, default=2000)
    parser.add_argument("--unpaced", action="store_true", help="also run with the bucket opened wide")
    parser.add_argument("--requests-per-s", type=float, default=None, help="default: the resource's default")
    parser.add_argument("--max-in-flight", type=int, default=None, help="default: the resource's default")
    args = parser.parse_args(argv)

    day = berlin_today() - timedelta(days=2)
    overrides: dict[str, Any] = {}
    if args.requests_per_s is not None:
        overrides["requests_per_s"] = args.requests_per_s
    if args.max_in_flight is not None:
        overrides["max_in_flight"] = args.max_in_flight
    with tempfile.TemporaryDirectory() as tmp, FakeJobsuche(today=berlin_today()) as fake:
        warehouse_url = f"sqlite:///{tmp}/warehouse.sqlite"
        ensure_schema(get_engine(warehouse_url))
        fill(fake, args.postings, day)
        started = time.perf_counter()
        dg.materialize([postings], partition_key=day.isoformat(),
                       resources=resources_for(warehouse_url, aa_url=fake.base_url, sources="arbeitsagentur"))
        print(f"{args.postings} postings listed and stored in {time.perf_counter() - started:.1f} s (unpaced)")

        paced = JobsucheResource(base_url=fake.base_url, **overrides)
        seconds, meta = step(warehouse_url, fake, day, paced)
        report("job_descriptions at the configured pace", args.postings, seconds, meta, paced.requests_per_s)

        if args.unpaced:
            # A fresh partition state: forget the fetched descriptions so the same postings are fetched again.
            with get_engine(warehouse_url).begin() as conn:
                conn.execute(text("DELETE FROM job_descriptions"))
            wide = JobsucheResource(base_url=fake.base_url, **{**overrides, "requests_per_s": 1e6, "burst": 1000})
            seconds, meta = step(warehouse_url, fake, day, wide)
            report("job_descriptions unpaced (same in-flight cap)", args.postings, seconds, meta, None)


if __name__ == "__main__":
    main()
