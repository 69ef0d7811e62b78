"""Benchmark of a production-size day on PostgreSQL (issue #13 item 7; a script, not a test).

Builds the 400,000-posting warehouse of bench/synthetic_warehouse.py in a fresh PostgreSQL schema (dropped
afterwards), with its 90 partitions ending the day before Berlin's today, and serves a new day of 16,000
Jobsuche postings (16 Länder by population, ~10 % partner-hosted) and their details from the loopback fake
of ty_pipeline_tests/fakes/jobsuche_server.py. Then it runs each step the way production does, in its own
process, and measures time, rows/s, CPU and peak RSS (the step process and everything it waited for, from
`wait4`):

* `postings` and `job_descriptions` of the new day, `demand_snapshots` of it, and optionally
  `posting_embeddings` (`--with-embeddings`: the environment's backend; `--embed-server ollama|openai`: the
  server path, see below): `python -m dagster asset materialize -m ty_pipeline.definitions`;
* with `--all-steps`, the rest of the night in the nightly job's order (`DAILY_ASSETS` of
  ty_pipeline/definitions.py): `llm_enrichment` (posting_summaries, skill_keywords, ihl_scores) after
  `job_descriptions`, then `berufenet_mappings`, against two loopback fake Ollama hosts of 32 slots each
  with no modelled latency, answering with bench_llm_throughput.py's scripted answers (the mapper's
  verify calls pick the first candidate); and before the night, as an installation has them, the
  `berufenet_catalog` (the shipped KldB directory, or `--catalog`, plus `--berufenet-professions` from the
  loopback BERUFENET fake) and `profession_similarity`;
* `ty-pipeline status`, cold (`python -m ty_pipeline.cli status`: interpreter, imports and the queries).

The day's titles are catalog professions dressed up as posting titles (bench_berufenet.py's gender
markers, places, employers, salaries ...), about 6,900 distinct titles in 16,000 postings, a few
colloquial and generic ones; half of the postings carry their profession as the Jobsuche `beruf` label
(a full day: 5,771 distinct cleaned titles; most resolve by label or exact name, few reach the encoder).

Each step is set against a plain-SQL floor measured in the same run: COPY of the rows the step wrote into
an empty copy of their table with its indexes (postings, job_descriptions, posting_embeddings), the
GROUP BY state, domain of demand (serial, as an `INSERT ... SELECT` runs), a `count(*)` of postings for
status, the COPY of what the other steps wrote (the LLM results, the mappings, the catalog with its
aliases and name vectors, the similarity pairs). The `postings` step also reports its own storing cost per 1,000 rows (metadata
`store_ms_per_1000`, `store_cpu_ms_per_1000`), which is printed next to the COPY floor per 1,000 rows.

`--embed-server API` runs `posting_embeddings` with `TY_EMBED_BACKEND=ollama` (model bge-m3) against a loopback
fake of that API (`ollama`: `/api/embed`, `openai`: `/v1/embeddings`) in this process, with the GPU latency
model of bench/embed_server.py (`--embed-slots` x `--embed-tps` per slot, `--embed-overhead-ms` per request,
slowed by `--time-scale`; the module says why those defaults). The step's own wall time is scaled; the report
puts the server's share back in modelled seconds and prints requests, tokens, slot saturation, the per-slot
rate at which the day takes exactly 10 minutes, and a CPU baseline measured in the same run: the onnx backend
on `--onnx-sample` of the fixture texts the day is made of (0: skip).

The request pacing of the `jobsuche` resource is lifted by run config (the fake needs no politeness;
`--polite` keeps the resource defaults, 30 requests/s), so the time is the pipeline's own.

`--description-chars N` cuts the day's descriptions to N characters on average (0.5-1.5x N): the full
fixtures (median 6.6 kB) are Deutsche Bank postings, far longer than Jobsuche's; 940 gives issue #13's measured
2.12 MiniLM chunks per text, so `--with-embeddings --description-chars 940` is the issue's day for the
embedding goal.

Usage: `python bench/bench_scale.py [--postings 400000] [--day 16000] [--all-steps] [--with-embeddings]
[--description-chars 940]
[--embed-server ollama|openai [--embed-slots 4] [--embed-tps 5000] [--time-scale 0.2] [--onnx-sample 21]]
[--polite] [--catalog seed] [--berufenet-professions 3000]`.
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
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_berufenet import COLLOQUIAL, NEGATIVES, dress  # noqa: E402
from bench.bench_llm_throughput import MODELS, bench_postings  # noqa: E402
from bench.bench_llm_throughput import responder as scripted_answer  # noqa: E402
from bench.embed_server import (  # noqa: E402
    APIS,
    GOAL_S,
    EmbedServerModel,
    add_model_arguments,
    chars_of,
    client_env,
    fake_embed_server,
    model_from,
    server_figures,
)
from bench.synthetic_warehouse import STATE_WEIGHTS, build_postings_warehouse, demand_floor  # noqa: E402
from ty_pipeline.domain.clock import berlin_today  # noqa: E402
from ty_pipeline.domain.kldb_catalog import NamedProfession  # noqa: E402
from ty_pipeline.domain.states import STATES  # noqa: E402
from ty_pipeline.domain.titles import clean_job_title  # noqa: E402
from ty_pipeline.professions.catalog import load_catalog_file  # noqa: E402
from ty_pipeline.professions.llm import CandidateChoice  # noqa: E402
from ty_pipeline.resources.jobsuche import JobsucheResource  # noqa: E402
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource  # noqa: E402
from ty_pipeline.warehouse.engine import get_engine  # noqa: E402
from ty_pipeline_tests.fakes.berufenet_server import FakeBerufenet, numbered_professions  # noqa: E402
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche, make_detail, make_v6_item  # noqa: E402
from ty_pipeline_tests.fakes.ollama_server import FakeOllama  # noqa: E402
from ty_pipeline_tests.fakes.openai_server import request_schema  # noqa: E402
from ty_pipeline_tests.pg_schemas import pg_schema  # noqa: E402

FIRMS = ["Nordlicht Dienstleistungen GmbH", "Muster & Söhne KG", "Klinikum Beispielstadt gGmbH",
         "Personalservice Adecco-Beispiel GmbH", "Stadtwerke Musterhausen", "Bäckerei Krume e.K."]
# The jobsuche resource's pacing is politeness towards the real API; against the fake it would only
# measure the configured rate. Unlimited here: a rate no step reaches, the default 6 requests in flight.
# Only knobs the resource has are set, so the bench survives a change in how pacing is configured.
NO_PAUSES = {"requests_per_s": 100_000.0, "burst": 1000, "page_delay_s": 0.0, "detail_delay_s": 0.0}
# The same for the BERUFENET walk of the catalog build (5 requests/s by default; older versions paused
# 0.1 s after each call per worker).
NO_CATALOG_PAUSES = {"berufenet_requests_per_s": 100_000.0, "berufenet_burst": 1000, "berufenet_delay_s": 0.0}
# The LLM fleet of bench_llm_throughput.py's memory arm: 2 hosts x 32 slots, no modelled latency.
LLM_HOSTS, LLM_SLOTS = 2, 32
# Issue #13's measured day: 14,475 texts, 2.12 MiniLM chunks each, a chunk at most 635 characters.
ISSUE_DAY_CHUNKS, MINILM_CHUNK_CHARS = 30_700, 635
ISSUE_DAY_CHARS = ISSUE_DAY_CHUNKS * MINILM_CHUNK_CHARS
DISTINCT_TITLE_SHARE = 0.5  # a pool of day/2 titles: ~0.43 x day distinct titles are drawn from it
LABELLED_SHARE = 0.5  # postings that carry their profession as the Jobsuche `beruf` label


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
    note: str = ""


def title_pool(professions: Sequence[NamedProfession], n: int, seed: int = 16) -> list[tuple[str, str | None]]:
    """`n` (posting title, `beruf` label) pairs: catalog professions dressed up as posting titles the way
    bench_berufenet.py dresses them, plus its colloquial and generic titles, which have no label."""
    rng = random.Random(seed)
    named = [p for p in professions if not p.is_occupation]
    pool: list[tuple[str, str | None]] = []
    for prof in rng.choices(named, k=max(1, n - len(COLLOQUIAL) - len(NEGATIVES))):
        pool.append((dress(clean_job_title(prof.name) or prof.name, rng, rng.randint(1, 3)), prof.name))
    pool += [(title, None) for title, _domain in COLLOQUIAL] + [(title, None) for title in NEGATIVES]
    return pool


def cut_at_word(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at the last space of the second half if there is one."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit)
    return text[: space if space > limit // 2 else limit]


def serve_day(fake: FakeJobsuche, day: date, n: int, titles: Sequence[tuple[str, str | None]], seed: int = 16,
              description_chars: int = 0) -> None:
    """`n` postings of `day`, each with its own description: bench_llm_throughput.py's (the 21 Deutsche Bank
    fixtures, 1.7-12 kB, median 6.6 kB) after a first sentence naming the posting, so no two postings share
    a scripted summary (a blocking check fails a partition where many do), and the prompts have the length
    of real postings.

    `description_chars` > 0 cuts each description to a length drawn uniformly from 0.5x to 1.5x that mean:
    Jobsuche descriptions are far shorter than the Deutsche Bank fixtures. Issue #13 measured 2.12 MiniLM
    chunks (<= 635 characters) per text on a real day; a mean of 940 characters gives 2.1 here."""
    rng = random.Random(seed)
    cuts = random.Random(seed + 1)
    for i, text in zip(range(n), bench_postings(n), strict=True):
        state = rng.choices(STATES, STATE_WEIGHTS)[0]
        title, label = rng.choice(titles)
        item = make_v6_item(
            f"{20000 + i % 900}-{1200000000 + i}-S", title, published=day, state=state,
            city=state.split("-")[0], plz=f"{rng.randint(1067, 99998):05d}", firma=rng.choice(FIRMS),
            hauptberuf=label if rng.random() < LABELLED_SHARE else None,
            externe_url=f"https://partner.example/job/{i}" if rng.random() < 0.1 else None,
        )
        own = f"Diese Stellenausschreibung hat die Referenznummer {item['referenznummer']}.\n"
        description = own + text.description
        if description_chars > 0:
            description = cut_at_word(description, int(cuts.uniform(0.5, 1.5) * description_chars))
        fake.add(item, state=state, detail=make_detail(item, description))


def night_answer(model: str, body: dict[str, Any]) -> Any:
    """bench_llm_throughput.py's scripted answers; the mapper's verify call takes the first candidate."""
    schema = request_schema(body) or {}
    if schema.get("title") == CandidateChoice.__name__:
        return {"choice": 1}
    return scripted_answer(model, body)


@contextmanager
def llm_fleet() -> Iterator[str]:
    """`TY_LLM_HOSTS` of `LLM_HOSTS` loopback fake Ollama servers with `LLM_SLOTS` slots each."""
    with ExitStack() as stack:
        fakes = [stack.enter_context(FakeOllama(models=MODELS, responder=night_answer)) for _ in range(LLM_HOSTS)]
        yield ",".join(f"{fake.base_url}={LLM_SLOTS}" for fake in fakes)


def run_step(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, bool]:
    """(wall s, CPU s, peak RSS MiB, success) of one child process, the processes it waited for included;
    its output goes to `log`.

    Through `/usr/bin/time`: a child forked straight from this (large) process would report this
    process's RSS as its own peak, since Linux carries the high-water mark across fork and exec.
    Run through `reap_all.py`, which waits for the run's orphaned fork server and so for its steps."""
    usage = log.with_suffix(".time")
    with log.open("ab") as out:
        # reap_all.py: a run's steps are forked from a fork server nobody waits for; it collects them.
        code = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(usage), sys.executable,
                               str(Path(__file__).with_name("reap_all.py")), *argv], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    wall, user, system, max_kib = usage.read_text().split()[-4:]  # a failed child adds a line before them
    return float(wall), float(user) + float(system), int(max_kib) / 1024, code == 0


def materialize(asset: str, day: date | None, config: Path, env: dict[str, str], logs: Path,
                name: str | None = None) -> tuple[float, float, float, bool]:
    """`dagster asset materialize` of `asset` (comma list) in its own process; output to `logs`/NAME.log."""
    partition = ["--partition", day.isoformat()] if day is not None else []
    return run_step([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ty_pipeline.definitions",
                     "--select", asset, *partition, "-c", str(config)], env, logs / f"{name or asset}.log")


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


def copy_floors(url: str, tables: Sequence[str], where: str, params: dict) -> tuple[float, dict[str, int]]:
    """`copy_floor` of several tables one after the other: total seconds, rows per table."""
    seconds, rows = 0.0, {}
    for table in tables:
        s, n = copy_floor(url, table, where, params)
        seconds += s
        rows[table] = n
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
    parser.add_argument("--all-steps", action="store_true",
                        help="also the catalog, similarity, LLM enrichment and mapping steps (the whole night "
                        "but posting_embeddings, which --with-embeddings adds)")
    parser.add_argument("--with-embeddings", action="store_true", help="also time posting_embeddings (slow on CPU)")
    parser.add_argument("--embed-server", choices=APIS, default=None,
                        help="time posting_embeddings through the server path against a loopback fake of this API "
                        "with a modelled GPU (bench/embed_server.py)")
    add_model_arguments(parser, time_scale=0.2)
    parser.add_argument("--onnx-sample", type=int, default=21,
                        help="with --embed-server: fixture texts the onnx backend encodes as a same-run CPU baseline")
    parser.add_argument("--embed-commit-every", type=int, default=0,
                        help="posting_embeddings' commit_every (postings per page); 0 = the asset's default")
    parser.add_argument("--description-chars", type=int, default=0,
                        help="mean length the day's descriptions are cut to (0: the full fixtures, median 6.6 kB); "
                             "940 gives issue #13's 2.12 MiniLM chunks per text")
    parser.add_argument("--polite", action="store_true", help="keep the resource's pauses between requests")
    parser.add_argument("--catalog", default=None,
                        help="TY_KLDB_CSV for the catalog step and the day's titles (default: the shipped KldB "
                        "directory; 'seed': the small seed catalog, for a quick try)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema afterwards (to inspect it)")
    parser.add_argument("--logs", default=None, help="keep each step's output in this directory (default: dropped)")
    parser.add_argument("--berufenet-professions", type=int, default=3000,
                        help="professions the BERUFENET fake lists for the catalog step (0: no BERUFENET API)")
    args = parser.parse_args()
    today = berlin_today()
    day = today - timedelta(days=1)
    steps: list[Step] = []
    professions = load_catalog_file(args.catalog).professions
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = stack.enter_context(pg_schema("bench_", keep=args.keep))
        fake = stack.enter_context(FakeJobsuche(today=today))
        home, config = Path(tmp) / "dagster_home", Path(tmp) / "run_config.yaml"
        log = Path(args.logs) if args.logs else Path(tmp) / "logs"
        home.mkdir()
        log.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build_postings_warehouse(url, args.postings, today=day - timedelta(days=1),
                                 now=datetime.combine(day, datetime.min.time()) + timedelta(hours=2))
        size = scalar(url, "SELECT pg_total_relation_size('postings')") / 2**20
        print(f"built {args.postings:,} postings (postings table {size:.0f} MiB) in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        titles = title_pool(professions, max(1, int(args.day * DISTINCT_TITLE_SHARE)))
        serve_day(fake, day, args.day, titles, description_chars=args.description_chars)
        print(f"serving {args.day:,} postings for {day} from the fake Jobsuche ({time.perf_counter() - started:.1f} s)")

        resources: dict[str, Any] = {}
        knobs = {} if args.polite else {k: v for k, v in NO_PAUSES.items() if k in JobsucheResource.model_fields}
        if knobs:
            resources["jobsuche"] = {"config": knobs}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(home), "TY_WAREHOUSE_URL": url,
               "TY_AA_BASE_URL": fake.base_url, "TY_SOURCES": "arbeitsagentur", "HF_HUB_OFFLINE": "1",
               "TY_STEP_MAX_RETRIES": "0"}
        if args.all_steps:
            # Every Jobsuche posting goes to the model, uncapped (the default scope is Deutsche Bank only on
            # one server, capped by the measured throughput).
            env.update({"TY_LLM_HOSTS": stack.enter_context(llm_fleet()), "TY_LLM_SOURCES": "arbeitsagentur",
                        "TY_LLM_MAX_POSTINGS": "0"})
            env.pop("TY_LLM_BACKEND", None)
            if args.catalog:
                env["TY_KLDB_CSV"] = args.catalog
            if args.berufenet_professions:
                berufenet = stack.enter_context(FakeBerufenet(numbered_professions(args.berufenet_professions)))
                env["TY_BERUFENET_API_URL"] = berufenet.base_url
                if not args.polite:
                    resources["profession_catalog"] = {"config": {
                        k: v for k, v in NO_CATALOG_PAUSES.items() if k in ProfessionCatalogResource.model_fields}}
        run_config: dict[str, Any] = {"resources": resources} if resources else {}
        if args.embed_commit_every > 0:
            run_config["ops"] = {"posting_embeddings": {"config": {"commit_every": args.embed_commit_every}}}
        config.write_text(json.dumps(run_config))
        on_day = {"day": day}
        of_day = "posting_id IN (SELECT posting_id FROM postings WHERE partition_date = %(day)s)"

        if args.all_steps:
            # Not in the nightly job: built when missing and after each catalog build. The night's
            # `berufenet_mappings` needs the catalog, so an installation has both before its first night.
            wall, cpu, rss, ok = materialize("berufenet_catalog", None, config, env, log)
            floor, counts = copy_floors(url, ["berufenet_catalog", "berufenet_aliases", "embeddings"], "TRUE", {})
            steps.append(Step("berufenet_catalog", counts["berufenet_catalog"], wall, cpu, rss, floor,
                              "COPY of the catalog, aliases, name vectors", ok))
            wall, cpu, rss, ok = materialize("profession_similarity", None, config, env, log)
            floor, counts = copy_floors(url, ["profession_similarity"], "TRUE", {})
            steps.append(Step("profession_similarity", counts["profession_similarity"], wall, cpu, rss, floor,
                              "COPY of the pairs", ok))

        # The nightly job's order (`DAILY_ASSETS`): postings, job_descriptions, llm_enrichment,
        # berufenet_mappings, posting_embeddings, demand_snapshots.
        wall, cpu, rss, ok = materialize("postings", day, config, env, log)
        floor, rows = copy_floor(url, "postings", "partition_date = %(day)s", on_day)
        steps.append(Step("postings", rows, wall, cpu, rss, floor, "COPY of the day's rows", ok))
        meta = latest_metadata(home, "postings")
        fake.requests.clear()  # the fake's request log is this process's memory, not the steps'

        wall, cpu, rss, ok = materialize("job_descriptions", day, config, env, log)
        floor, rows = copy_floor(url, "job_descriptions", of_day, on_day)
        steps.append(Step("job_descriptions", rows, wall, cpu, rss, floor, "COPY of the day's rows", ok))
        fake.requests.clear()

        if args.all_steps:
            wall, cpu, rss, ok = materialize("posting_summaries,skill_keywords,ihl_scores", day, config, env, log,
                                             name="llm_enrichment")
            llm_tables = ["posting_summaries", "skill_keywords", "skill_keyword_items", "ihl_scores"]
            floor, counts = copy_floors(url, llm_tables, of_day, on_day)
            steps.append(Step("llm_enrichment", counts["posting_summaries"], wall, cpu, rss, floor,
                              "COPY of the day's results (3 lanes, skill items)", ok))

            wall, cpu, rss, ok = materialize("berufenet_mappings", day, config, env, log)
            floor, rows = copy_floor(url, "berufenet_mappings", of_day, on_day)
            steps.append(Step("berufenet_mappings", rows, wall, cpu, rss, floor, "COPY of the day's rows", ok))

        embed_report: list[str] = []
        if args.embed_server:
            model = model_from(args)
            timing = model.timing()
            with fake_embed_server(args.embed_server, timing) as server:
                wall, cpu, rss, ok = materialize("posting_embeddings", day, config,
                                                 client_env(env, server, args.embed_server, model.slots), log)
                requests = len(server.embed_calls())
                server.requests.clear()  # the request bodies are this process's memory
            floor, rows = copy_floor(url, "posting_embeddings", of_day, on_day)
            modelled = server_figures(timing).modelled(wall)
            steps.append(Step("posting_embeddings", rows, modelled, cpu, rss, floor, "COPY of the day's links", ok,
                              note=" (time modelled, see below)"))
            day_chars = scalar(url, "SELECT coalesce(sum(length(description)), 0) FROM job_descriptions WHERE "
                               "posting_id IN (SELECT posting_id FROM postings WHERE partition_date = :day)", day=day)
            embed_report = server_path_report(model, args, timing, wall, cpu, rss, requests, day_chars,
                                              latest_metadata(home, "posting_embeddings"))
        elif args.with_embeddings:
            wall, cpu, rss, ok = materialize("posting_embeddings", day, config, env, log)
            floor, rows = copy_floor(url, "posting_embeddings", of_day, on_day)
            steps.append(Step("posting_embeddings", rows, wall, cpu, rss, floor, "COPY of the day's links", ok))
            meta_embed = latest_metadata(home, "posting_embeddings")
            chunks, repeats = int(meta_embed.get("chunks_encoded", 0)), int(meta_embed.get("duplicate_chunks", 0))
            rate = (chunks - repeats) / wall if wall else 0.0
            embed_report = [
                f"posting_embeddings on this host ({env.get('TY_EMBED_BACKEND') or 'default backend'}): {rows:,} texts, "
                f"{chunks:,} chunks ({chunks / max(rows, 1):.2f} per text; {repeats:,} repeats within a page, "
                f"encoded once), {rate:.1f} chunks encoded/s over the step's wall time, {cpu:.0f} CPU-s, "
                f"peak RSS {rss:.0f} MiB",
                f"  issue #13's day (~{ISSUE_DAY_CHUNKS:,} chunks) at this rate: {ISSUE_DAY_CHUNKS / max(rate, 1e-9) / 60:.1f} min "
                f"(goal: <= 10 min on 2 CPU cores, or offloaded: --embed-server)",
            ]

        wall, cpu, rss, ok = materialize("demand_snapshots", day, config, env, log)
        rows = scalar(url, "SELECT count(*) FROM demand_snapshots WHERE snapshot_date = :day", day=day)
        started = time.perf_counter()
        demand_floor(url, day, parallel=False)
        steps.append(Step("demand_snapshots", rows, wall, cpu, rss, time.perf_counter() - started,
                          "GROUP BY state, domain (serial)", ok))

        # Three cold starts: the first right after the night's writes (autovacuum may still be busy with
        # them), the row reports the median; every sample is printed below the table.
        samples = [run_step([sys.executable, "-m", "ty_pipeline.cli", "status", "--warehouse-url", url],
                            env, log / "status.log") for _ in range(3)]
        wall, cpu, rss, ok = sorted(samples)[1]
        floor, rows = count_floor(url)
        steps.append(Step("status (cold CLI)", rows, wall, cpu, rss, floor, "count(*) of postings, median of 3",
                          all(sample[3] for sample in samples)))
        status_samples = ", ".join(f"{w:.2f} s / {c:.2f} CPU-s" for w, c, _r, _ok in samples)

        print(f"\n{'step':<22} {'rows':>8} {'time s':>8} {'rows/s':>8} {'CPU s':>7} {'peak RSS':>9} "
              f"{'floor s':>8} {'x floor':>8}  floor")
        for s in steps:
            flag = "" if s.ok else "  FAILED (see the log)"
            print(f"{s.name:<22} {s.rows:>8,} {s.wall_s:>8.1f} {s.rows / s.wall_s:>8,.0f} {s.cpu_s:>7.1f} "
                  f"{s.peak_rss_mib:>6.0f} MiB {s.floor_s:>8.3f} {s.wall_s / s.floor_s:>8.0f}  {s.floor_label}{s.note}{flag}")
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"status, three cold starts in a row: {status_samples}")
        if meta.get("store_ms_per_1000") is not None:
            postings_step = next(s for s in steps if s.name == "postings")
            postings_floor = postings_step.floor_s * 1000 * 1000 / max(postings_step.rows, 1)
            print(f"\npostings: storing {meta.get('store_seconds')} s for the day = {meta['store_ms_per_1000']} ms "
                  f"per 1,000 rows ({meta.get('store_cpu_ms_per_1000')} ms CPU); COPY floor {postings_floor:.1f} ms "
                  f"per 1,000 rows -> {meta['store_ms_per_1000'] / postings_floor:.1f} x floor")
        for asset, figures in (("postings", meta), ("job_descriptions", latest_metadata(home, "job_descriptions"))):
            if figures.get("requests_arbeitsagentur"):
                print(f"{asset}: Jobsuche requests {json.dumps(figures['requests_arbeitsagentur'])}")
        if args.all_steps:
            print_night_metadata(home)
        if embed_report:
            print("\n" + "\n".join(embed_report))
        failed = [s.name for s in steps if not s.ok]
        for name in failed:
            step_log = log / f"{'status' if name.startswith('status') else name}.log"
            print(f"\n{name} failed; the end of its output ({step_log}):\n{step_log.read_text()[-5000:]}")
        if failed:
            sys.exit("a step failed")


def server_path_report(model: EmbedServerModel, args: argparse.Namespace, timing: Any, wall: float, cpu: float,
                       rss: float, requests: int, day_chars: int, meta: dict) -> list[str]:
    """The server path's figures: measured (client CPU and memory, requests, chunks), modelled (the step's
    time at the modelled GPU, slot saturation, the rate for 10 min), and the same-run onnx baseline."""
    fig = server_figures(timing)
    modelled = fig.modelled(wall)
    chunks, repeats = int(meta.get("chunks_encoded", 0)), int(meta.get("duplicate_chunks", 0))
    encoded_chars = chars_of(fig.tokens)
    out = [
        f"posting_embeddings through the server path: {model.label(args.embed_server)}; model "
        f"{meta.get('model')}, {meta.get('new')} new vectors of dim {meta.get('dim')}, "
        f"commit_every {args.embed_commit_every or 'default (256)'}",
        f"  measured: wall {wall:.1f} s at time x{model.time_scale:g}; client CPU {cpu:.1f} s (the step's processes, "
        f"start-up included) = {1000 * cpu / max(chunks - repeats, 1):.2f} CPU-s per 1,000 chunks sent; peak RSS "
        f"{rss:.0f} MiB; {chunks:,} chunks ({repeats:,} repeats within a page, encoded once), {requests} requests, "
        f"{fig.tokens / 1e6:.2f} M tokens (~{encoded_chars / 1e6:.0f} M chars) of the day's "
        f"{day_chars / 1e6:.0f} M chars of text",
        f"  MODEL (not a measurement): step {modelled:.0f} s = {modelled / 60:.1f} min (goal {GOAL_S / 60:.0f} min); "
        f"server window {fig.modelled_window_s:.0f} s, of it {fig.client_s:.1f} s with no request on the server; "
        f"server busy {fig.busy_s:.0f} slot-s; slots held at once max {fig.max_busy} of {fig.slots}; "
        f"slot saturation {fig.saturation:.0%} of the window; {(chunks - repeats) / fig.modelled_window_s:.1f} "
        f"chunks/s, {encoded_chars / fig.modelled_window_s / 1000:.0f} k chars/s",
    ]
    need = fig.tps_per_slot_for(GOAL_S, modelled, model.overhead_ms / 1000)
    out.append(f"  MODEL: the step takes exactly {GOAL_S / 60:.0f} min at {need:,.0f} tok/s per slot x {fig.slots} "
               f"slots ({need * fig.slots:,.0f} tok/s for the server; modelled here: {model.tps_per_slot:,.0f} per slot)")
    server_cps = encoded_chars / fig.modelled_window_s if fig.modelled_window_s > 0 else 0.0
    out.append(f"  issue #13's day (~{ISSUE_DAY_CHUNKS:,} MiniLM chunks of <= {MINILM_CHUNK_CHARS} chars: <= "
               f"{ISSUE_DAY_CHARS / 1e6:.1f} M chars; this day has {day_chars / ISSUE_DAY_CHARS:.1f}x that) at this throughput: <= "
               f"{ISSUE_DAY_CHARS / server_cps / 60:.1f} min of server window" if server_cps else "")
    if day_chars > encoded_chars > 0:
        out.append(f"  a day without repeated chunks ({day_chars / 1e6:.0f} M chars, {day_chars / encoded_chars:.2f}x) "
                   f"would keep the server busy ~{(fig.modelled_window_s * day_chars / encoded_chars) / 60:.1f} min "
                   "at the same saturation")
    if args.onnx_sample > 0:
        child = subprocess.run([sys.executable, str(ROOT / "bench" / "embed_server.py"), "--onnx-sample",
                                str(args.onnx_sample)], capture_output=True, text=True, check=False,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
        if child.returncode != 0:
            out.append(f"  onnx baseline failed: {child.stderr[-1500:]}")
            return out
        onnx = json.loads(child.stdout.strip().splitlines()[-1])
        onnx_cps = onnx["chars"] / onnx["wall_s"]
        out.append(
            f"  CPU baseline, same run: onnx on {onnx['texts']} fixture texts, {onnx['chunks']} chunks "
            f"({onnx['repeats']} repeats) in {onnx['wall_s']:.1f} s wall, {onnx['cpu_s']:.1f} CPU-s: "
            f"{onnx['chunks'] / onnx['wall_s']:.1f} chunks/s, {onnx_cps / 1000:.1f} k chars/s (README, free cores: "
            f"34.9 chunks/s); the modelled server path encodes {server_cps / onnx_cps:.1f}x the characters per "
            f"second; the onnx path would need ~{encoded_chars / onnx_cps / 60:.0f} min at this rate for the "
            f"characters this step sent, ~{ISSUE_DAY_CHARS / onnx_cps / 60:.0f} min for issue #13's day")
    return out


# What the added steps report about themselves (their materialization metadata), next to the table.
NIGHT_METADATA = {
    "berufenet_catalog": ("entries", "distinct_names", "new_embeddings", "berufenet_listed", "seconds"),
    "profession_similarity": ("professions", "pairs", "new_vectors", "seconds"),
    "posting_summaries": ("processed", "failed", "pending", "server_errors", "llm_calls", "seconds"),
    "ihl_scores": ("processed", "failed", "pending", "server_errors", "llm_calls", "seconds"),
    "berufenet_mappings": ("processed", "distinct_titles", "resolved_share", "encoded_titles", "llm_calls",
                           "titles_by_status", "seconds"),
}


def print_night_metadata(home: Path) -> None:
    print()
    for asset, keys in NIGHT_METADATA.items():
        figures = latest_metadata(home, asset)
        shown = {k: figures[k] for k in keys if k in figures}
        stages = {k: v for k, v in figures.items() if k.startswith("seconds_")}
        print(f"{asset}: {json.dumps(shown, default=str)}" + (f" stages {json.dumps(stages)}" if stages else ""))


if __name__ == "__main__":
    main()
