"""Benchmark of `posting_embeddings` per backend: speed, memory over the run, and ONNX vs torch agreement
(not a test).

Builds a warehouse with one partition of N synthetic German postings (descriptions of 400 to 3,000
characters, mean about 1,400, so about two chunks each at the MiniLM window, like the real day in
issue #13), then embeds it with each backend in its own subprocess (so each one's peak RSS is its own)
through `embed_partition`, the function the asset runs: pages of postings read, encoded, committed and
dropped. Prints per backend texts/s, chunks/s, peak RSS (VmHWM) and the RSS after 25/50/75/100 % of the
postings, which should stay flat. Then the cosine between the torch and the onnx vector of every text
(min / mean) and the onnx/torch speed ratio, both measured in this run on the same texts.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_embeddings.py [--texts 2000] [--backends sentence-transformers,onnx]
      add `ollama` to --backends to send the texts to OLLAMA_HOST (TY_EMBED_MODEL picks the model there).
      --warehouse-url postgresql://... benchmarks on PostgreSQL instead of a temporary SQLite file.
      --fake-server instead embeds with the `ollama` backend against a loopback fake started in this
      process (`--embed-api ollama`: /api/embed, `openai`: /v1/embeddings; the client runs in a
      subprocess, so its CPU and RSS are its own): once with no latency (the client's own cost) and
      once with a modelled GPU server (bench/embed_server.py: its rates and why).
      --catalog builds the full KldB profession catalog (about 20,000 names, `berufenet_catalog`'s
      build_catalog) with each backend instead, and prints seconds, names/s and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed_server import (  # noqa: E402
    APIS,
    GOAL_S,
    EmbedServerModel,
    add_model_arguments,
    client_env,
    fake_embed_server,
    model_from,
    server_figures,
)

DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 22, 0)

SENTENCES = [
    "Wir suchen zum nächstmöglichen Zeitpunkt eine engagierte Pflegefachkraft (m/w/d) in Vollzeit.",
    "Sie betreuen unsere Bewohnerinnen und Bewohner und dokumentieren die Pflege sorgfältig.",
    "Eine abgeschlossene Ausbildung und Freude an der Arbeit im Team setzen wir voraus.",
    "Wir bieten eine tarifliche Vergütung, 30 Tage Urlaub und ein Jobticket.",
    "Ihre Bewerbung richten Sie bitte mit Angabe Ihres frühestmöglichen Eintrittstermins an uns.",
    "Als Softwareentwickler (m/w/d) gestalten Sie unsere Plattform mit Python und PostgreSQL.",
    "Erfahrung mit Cloud-Diensten, Tests und Code-Reviews ist wünschenswert.",
    "Zu Ihren Aufgaben gehören die Wartung und Instandsetzung unserer Produktionsanlagen.",
    "Sie verfügen über einen Führerschein der Klasse B und sind zeitlich flexibel.",
    "Die Stelle ist zunächst auf zwei Jahre befristet, eine Übernahme wird angestrebt.",
    "Sie beraten unsere Kundinnen und Kunden kompetent am Telefon und per E-Mail.",
    "Gute Deutschkenntnisse in Wort und Schrift sowie sichere MS-Office-Kenntnisse setzen wir voraus.",
    "Wir sind ein familiengeführtes Unternehmen mit über 200 Beschäftigten am Standort.",
    "Es erwartet Sie ein moderner Arbeitsplatz in einem kollegialen Umfeld.",
    "Sie planen Touren, disponieren Fahrzeuge und behalten die Lieferzeiten im Blick.",
    "Eine betriebliche Altersvorsorge und Zuschüsse zum Fitnessstudio runden unser Angebot ab.",
    "Sie bereiten Speisen nach Rezeptur zu und achten auf die Einhaltung der Hygienevorschriften.",
    "Kenntnisse in der Buchhaltung mit DATEV sind von Vorteil.",
    "Sie arbeiten im Schichtdienst, auch an Wochenenden und Feiertagen.",
    "Wir fördern Ihre Weiterbildung und unterstützen Sie bei der Entwicklung Ihrer Karriere.",
]
CITIES = ["Berlin", "Hamburg", "München", "Köln", "Leipzig", "Dresden", "Essen", "Bremen", "Kiel", "Erfurt"]


def posting_text(rng: random.Random, index: int) -> str:
    length = int(min(3000, max(400, rng.lognormvariate(7.15, 0.45))))
    parts = [f"Stellenangebot {index} in {rng.choice(CITIES)}:"]
    while len(" ".join(parts)) < length:
        parts.append(rng.choice(SENTENCES))
    return " ".join(parts)


def build_warehouse(url: str, texts: int, seed: int) -> None:
    from ty_pipeline.domain.description_status import DescriptionStatus
    from ty_pipeline.domain.posting_record import PostingRecord, Source
    from ty_pipeline.warehouse.engine import ensure_schema, get_engine
    from ty_pipeline.warehouse.postings_store import upsert_postings
    from ty_pipeline.warehouse.schema import job_descriptions, postings

    engine = get_engine(url)
    ensure_schema(engine)
    rng = random.Random(seed)
    records = [
        PostingRecord(source=Source.ARBEITSAGENTUR, external_id=f"bench-{i}", title=f"Stelle {i}", state="Berlin",
                      published_date=DAY, raw={"id": i})
        for i in range(texts)
    ]
    upsert_postings(engine, records, partition_date=DAY, now=NOW)
    with engine.begin() as conn:
        ids = [row[0] for row in conn.execute(postings.select().with_only_columns(postings.c.posting_id)
                                              .where(postings.c.partition_date == DAY).order_by(postings.c.posting_id))]
        rows = [{"posting_id": pid, "status": str(DescriptionStatus.OK), "description": posting_text(rng, i),
                 "source": "arbeitsagentur", "fetched_at": NOW} for i, pid in enumerate(ids)]
        cols = set(job_descriptions.c.keys())
        conn.execute(job_descriptions.insert(), [{k: v for k, v in r.items() if k in cols} for r in rows])


def rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_one(url: str, backend: str, page_size: int, batch_size: int) -> dict:
    """In a fresh process: embed the partition with one backend; print one JSON line of figures."""
    from ty_pipeline.domain.clock import utcnow
    from ty_pipeline.enrichment.embeddings import embed_partition
    from ty_pipeline.resources.embedder import EmbedderResource
    from ty_pipeline.warehouse.engine import get_engine

    engine = get_engine(url)
    embedder = EmbedderResource(backend=backend, batch_size=batch_size)
    samples: dict[int, int] = {}
    started_rss = rss_kib()

    def on_page(run, total: int) -> None:  # type: ignore[no-untyped-def]
        done = run.processed / max(total, 1)
        for quarter in (25, 50, 75, 100):
            if done * 100 >= quarter and quarter not in samples:
                samples[quarter] = rss_kib()

    t0 = time.monotonic()
    with embedder.open_encoder() as encoder:
        load_s = time.monotonic() - t0
        after_load_rss = rss_kib()
        cpu_before_encode = time.process_time()
        run = embed_partition(engine, DAY, encoder, max_chars=embedder.chunk_chars(encoder),
                              batch_size=embedder.encode_batch_size(), page_size=page_size, now=utcnow,
                              on_page=on_page)
        encode_cpu_s = time.process_time() - cpu_before_encode
    cpu = os.times()
    return {
        "backend": backend, "model": run.model, "texts": run.new, "chunks": run.chunks,
        "duplicate_chunks": run.duplicate_chunks, "encode_calls": run.encode_calls, "encode_cpu_s": encode_cpu_s,
        "load_s": load_s, "encode_s": run.encode_seconds, "cpu_s": cpu.user + cpu.system,
        "rss_start_mib": started_rss / 1024, "rss_after_load_mib": after_load_rss / 1024,
        "rss_mib": {q: samples[q] / 1024 for q in sorted(samples)}, "peak_mib": rss_kib("VmHWM") / 1024,
    }


def run_catalog(url: str, backend: str) -> dict:
    """In a fresh process: build the full KldB profession catalog (about 20,000 names) with one backend."""
    from ty_pipeline.domain.clock import utcnow
    from ty_pipeline.professions.catalog_build import build_catalog
    from ty_pipeline.resources.embedder import EmbedderResource
    from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
    from ty_pipeline.warehouse.engine import ensure_schema, get_engine

    engine = get_engine(url)
    ensure_schema(engine)
    loaded = ProfessionCatalogResource().load()
    t0 = time.monotonic()
    result = build_catalog(engine, loaded, open_encoder=EmbedderResource(backend=backend).encoder_opener(None),
                           now=utcnow, batch_size=64, min_share_of_stored=0)
    seconds = time.monotonic() - t0
    cpu = os.times()
    return {"backend": backend, "names": result.distinct_names, "new": result.vectors.new, "seconds": seconds,
            "cpu_s": cpu.user + cpu.system, "peak_mib": rss_kib("VmHWM") / 1024, "rss_mib": rss_kib() / 1024}


# -- the server path against a loopback fake (the server model: bench/embed_server.py) -----------------------

DAY_TEXTS = 14_475  # the day (#13)


def server_arm(url: str, args: argparse.Namespace, label: str, model: EmbedServerModel | None) -> None:
    """Embed the partition with TY_EMBED_BACKEND=ollama against the fake of `--embed-api`; print client cost
    and, with a server model, its slot saturation and the modelled wall time for the issue's day."""
    timing = model.timing() if model is not None else None
    slots = model.slots if model is not None else args.embed_slots
    with fake_embed_server(args.embed_api, timing) as fake:
        # The client's slot budget is the modelled server's slots: `encode_texts` keeps that many requests
        # in flight (the pool's slots, as with TY_LLM_HOSTS in production).
        env = client_env(dict(os.environ), fake, args.embed_api, slots)
        out = subprocess.run(
            [sys.executable, __file__, "--one", "ollama", "--warehouse-url", url, "--page-size", str(args.page_size),
             "--batch-size", str(args.batch_size)],
            capture_output=True, text=True, check=False, env=env,
        )
        requests = len(fake.embed_calls())
    if out.returncode != 0:
        print(f"{label}: failed\n{out.stderr[-2000:]}")
        return
    r = json.loads(out.stdout.strip().splitlines()[-1])
    wall = r["encode_s"]
    print(f"{label}: {r['texts']} texts, {r['chunks']} chunks ({r['duplicate_chunks']} repeats), {requests} requests "
          f"({r['encode_calls']} encode calls) in {wall:.2f} s: {r['chunks'] / wall:.0f} chunks/s measured; "
          f"client CPU {r['encode_cpu_s']:.2f} s in the encode loop = {1000 * r['encode_cpu_s'] / r['chunks']:.2f} "
          f"CPU-s per 1,000 chunks; client peak RSS {r['peak_mib']:.0f} MiB; model {r['model']}")
    if timing is None or model is None:
        return
    fig = server_figures(timing)
    # The encode loop contains the server's window; the client's own time in it is not scaled.
    modelled_run = fig.modelled(wall)
    per_text = modelled_run / r["texts"]
    capacity_day = fig.busy_s / r["texts"] * DAY_TEXTS / fig.slots
    print(f"  MODEL (not a measurement): {fig.tokens} tokens in {fig.requests} calls, server busy "
          f"{fig.busy_s:.1f} modelled s; slots held at once: max {fig.max_busy} of {fig.slots}; "
          f"slot saturation {fig.busy_s / (fig.slots * modelled_run):.0%} of the encode loop; "
          f"run {modelled_run:.1f} modelled s = {r['chunks'] / modelled_run:.0f} chunks/s")
    print(f"  MODEL: the issue's day ({DAY_TEXTS:,} texts like these) ~ {per_text * DAY_TEXTS / 60:.1f} min with this "
          f"client; {capacity_day / 60:.1f} min of server time if every slot were kept busy")
    scaled = fig.scaled(DAY_TEXTS / r["texts"])
    need = scaled.tps_per_slot_for(GOAL_S, modelled_run * DAY_TEXTS / r["texts"], model.overhead_ms / 1000)
    print(f"  MODEL: 10 min for the day needs >= {need:,.0f} tok/s per slot x {fig.slots} slot(s) with this client "
          f"and {model.overhead_ms:g} ms/request ({scaled.tokens / 1e6:.2f} M tokens at 4 chars/token)")


def run_fake_server(url: str, args: argparse.Namespace) -> None:
    """Two arms on copies of the same warehouse (each must embed from scratch): no latency, then modelled."""
    import sqlite3

    if not url.startswith("sqlite:///"):
        raise SystemExit("--fake-server needs the temporary SQLite warehouse (it copies it per arm)")
    base = Path(url.removeprefix("sqlite:///"))
    arms: list[tuple[str, EmbedServerModel | None]] = [(f"fake {args.embed_api}, no latency", None)]
    if args.embed_tps > 0:
        model = model_from(args)
        arms.append((model.label(args.embed_api), model))
    for i, (label, arm_model) in enumerate(arms):
        copy = base.with_name(f"arm{i}.db")
        with sqlite3.connect(base) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)  # not a file copy: the warehouse runs in WAL mode, recent pages are in the -wal file
        server_arm(f"sqlite:///{copy}", args, label, arm_model)


def agreement(url: str, model_a: str, model_b: str) -> tuple[float, float, int]:
    from sqlalchemy import select

    from ty_pipeline.warehouse.embeddings_store import vector_from_bytes
    from ty_pipeline.warehouse.engine import get_engine
    from ty_pipeline.warehouse.schema import embeddings

    engine = get_engine(url)
    vectors: dict[str, dict[str, np.ndarray]] = {model_a: {}, model_b: {}}
    with engine.connect() as conn:
        for h, model, blob in conn.execute(select(embeddings.c.text_hash, embeddings.c.model, embeddings.c.vector)
                                           .where(embeddings.c.model.in_([model_a, model_b]))):
            vectors[model][h] = vector_from_bytes(blob)
    common = sorted(set(vectors[model_a]) & set(vectors[model_b]))
    cos = np.array([float(vectors[model_a][h] @ vectors[model_b][h]) for h in common])
    return float(cos.min()), float(cos.mean()), len(common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--backends", default="sentence-transformers,onnx")
    parser.add_argument("--page-size", type=int, default=256, help="postings per page (the asset's commit_every)")
    parser.add_argument("--batch-size", type=int, default=0, help="chunks per encode call; 0 = the backend's default")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--warehouse-url", default="", help="default: a temporary SQLite file")
    parser.add_argument("--catalog", action="store_true",
                        help="instead: build the full KldB catalog (about 20,000 names) with each backend")
    parser.add_argument("--fake-server", action="store_true",
                        help="instead: the ollama backend against a loopback fake Ollama, without and with a latency model")
    add_model_arguments(parser)  # --embed-tps (0 = skip the modelled arm), --embed-slots, --embed-overhead-ms, --time-scale
    parser.add_argument("--embed-api", choices=APIS, default="ollama",
                        help="the fake's API: Ollama's /api/embed or the OpenAI-compatible /v1/embeddings")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # child mode: run one backend
    args = parser.parse_args()

    if args.one and args.catalog:
        print(json.dumps(run_catalog(args.warehouse_url, args.one)))
        return
    if args.one:
        print(json.dumps(run_one(args.warehouse_url, args.one, args.page_size, args.batch_size)))
        return

    tmp = tempfile.TemporaryDirectory(prefix="bench_embeddings-")
    url = args.warehouse_url or f"sqlite:///{tmp.name}/warehouse.db"
    if args.catalog:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            out = subprocess.run([sys.executable, __file__, "--catalog", "--one", backend, "--warehouse-url", url],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"{backend}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"catalog {backend:22s} {r['names']} names ({r['new']} encoded) in {r['seconds']:.1f} s, "
                  f"{r['new'] / r['seconds']:.0f} names/s; CPU {r['cpu_s']:.0f} s; RSS {r['rss_mib']:.0f} MiB, "
                  f"peak {r['peak_mib']:.0f} MiB")
        tmp.cleanup()
        return
    t0 = time.monotonic()
    build_warehouse(url, args.texts, args.seed)
    print(f"warehouse: {args.texts} postings in {time.monotonic() - t0:.1f} s ({url.split(':')[0]})")
    if args.fake_server:
        run_fake_server(url, args)
        tmp.cleanup()
        return

    results = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        out = subprocess.run(
            [sys.executable, __file__, "--one", backend, "--warehouse-url", url, "--page-size", str(args.page_size),
             "--batch-size", str(args.batch_size)],
            capture_output=True, text=True, check=False,
        )
        if out.returncode != 0:
            print(f"{backend}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        quarters = " ".join(f"{q}%={v:.0f}" for q, v in r["rss_mib"].items())
        print(
            f"{backend:22s} {r['texts']} texts, {r['chunks']} chunks ({r['duplicate_chunks']} repeats encoded once) "
            f"in {r['encode_s']:.1f} s: "
            f"{r['texts'] / r['encode_s']:.1f} texts/s, {r['chunks'] / r['encode_s']:.1f} chunks/s; "
            f"CPU {r['cpu_s']:.0f} s ({r['chunks'] / r['cpu_s']:.1f} chunks per CPU-s); load {r['load_s']:.1f} s; RSS MiB start {r['rss_start_mib']:.0f}, "
            f"after load {r['rss_after_load_mib']:.0f}, {quarters}, peak {r['peak_mib']:.0f}"
        )
    by = {r["backend"]: r for r in results}
    if "sentence-transformers" in by and "onnx" in by:
        torch_r, onnx_r = by["sentence-transformers"], by["onnx"]
        ratio = (onnx_r["texts"] / onnx_r["encode_s"]) / (torch_r["texts"] / torch_r["encode_s"])
        lo, mean, n = agreement(url, torch_r["model"], onnx_r["model"])
        print(f"onnx/torch speed: {ratio:.2f}x; cosine onnx vs torch over {n} texts: min {lo:.4f}, mean {mean:.4f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
