"""Benchmark and calibration of the title -> profession mapper (not a test).

Builds a labelled set from the KldB catalog's named professions dressed up as real posting titles
(gender markers, "(m/w/d)", seniority words, locations, employers, salaries, Teilzeit, compound
spellings ...) with a fixed seed, plus generic titles that are no profession at all, and runs the same
`TitleMapper` the `berufenet_mappings` asset runs, without the LLM (an in-memory catalog instead of the
warehouse). Prints:

* top-1 accuracy on the 5-digit KldB code and the 2-digit domain, per kind of title;
* the share of titles resolved without the LLM, and how many would go to the LLM;
* the top-1 score distribution of titles that reach the embedding stage, split into right and wrong,
  with the thresholds it suggests (this is how `professions/thresholds.py` was calibrated);
* titles per second of the non-LLM stages against the replaced system's per-title Python loop over the
  catalog vectors, measured in the same run, and the ratio.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_berufenet.py [--titles 3000] [--seed 20261122]
      [--backend onnx|sentence-transformers] [--model NAME_OR_PATH]
The KldB CSV comes from TY_KLDB_CSV or data/kldb/ in the repository. Catalog-name vectors are cached in bench/out/.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ty_pipeline.clients.embedder import DEFAULT_EMBED_BACKEND, DEFAULT_EMBED_MODEL, TextEncoder  # noqa: E402
from ty_pipeline.data_files import kldb_csv  # noqa: E402
from ty_pipeline.domain.berufenet_status import RESOLVED, BerufenetStatus  # noqa: E402
from ty_pipeline.domain.kldb_catalog import NamedProfession, load_kldb_catalog  # noqa: E402
from ty_pipeline.domain.profession_matching import (  # noqa: E402
    CatalogMatrix,
    per_title_loop_baseline,
    rank_candidates,
)
from ty_pipeline.domain.profession_names import build_alias_index  # noqa: E402
from ty_pipeline.domain.profession_records import CatalogSnapshot, PostingTitle  # noqa: E402
from ty_pipeline.domain.titles import clean_job_title  # noqa: E402
from ty_pipeline.professions.catalog import SEED, embed_text_for  # noqa: E402
from ty_pipeline.professions.pipeline import (  # noqa: E402
    EmbeddingBackend,
    InMemorySources,
    MappingSettings,
    TitleMapper,
    group_by_title,
)
from ty_pipeline.professions.thresholds import MatchThresholds, thresholds_for  # noqa: E402
from ty_pipeline.resources.embedder import EmbedderResource  # noqa: E402

DEFAULT_CSV = kldb_csv()
CACHE_DIR = ROOT / "bench" / "out" / "berufenet_cache"

# -- the labelled set ---------------------------------------------------------------------------------------

GENDER = [" (m/w/d)", " (w/m/d)", " (m/f/d)", " m/w/d", " (all genders)", " (gn)", " (d/m/w)", " - m/w/d"]
SENIORITY = ["Senior ", "Junior ", "Erfahrener ", "Engagierter "]
PLACES = [" in München", " in Hamburg", " - Berlin", " (Raum Köln)", " in Frankfurt am Main", " Standort Stuttgart",
          " in Leipzig", " - Dresden"]
COMPANIES = [" bei Müller Logistik GmbH", " für die Stadtwerke Nord AG", " - Schmidt & Partner KG",
             " bei der Sparkasse Musterstadt", " bei Hansen Bau GmbH & Co. KG"]
SALARY = [" ab 3.500 €", " bis zu 55.000 € brutto p.a.", " 18,50 €/Std.", " | 4.200 - 5.100 EUR"]
CONTRACT = [" in Teilzeit", " Vollzeit", " (Teilzeit/Vollzeit)", " in Voll- oder Teilzeit", " Minijob"]
START = [" ab sofort", " zum 01.04.2026", " - ab sofort gesucht"]
TAILS = [" | Jetzt bewerben!", " - 12345", " (Ref. 2026-118)"]
# Compound heads a posting may split off with a hyphen ("Software-Entwickler"): the exact lookup misses
# those, so they exercise the embedding stage.
HEADS = ("entwickler", "berater", "techniker", "mechaniker", "mechatroniker", "kaufmann", "fachkraft", "helfer",
         "leiter", "assistent", "referent", "ingenieur", "pfleger", "verkäufer", "fahrer", "monteur", "elektriker",
         "manager", "planer", "designer", "lehrer", "arbeiter", "wirt", "meister", "koch", "bäcker")
# Generic titles that name no profession: a mapper must not resolve them confidently.
NEGATIVES = [
    "Quereinsteiger (m/w/d) gesucht", "Nebenjob am Wochenende", "Mitarbeiter (m/w/d)", "Aushilfe (m/w/d)",
    "Minijob auf 538 € Basis", "Trainee-Programm 2026", "Werkstudent (m/w/d)", "Initiativbewerbung",
    "Allrounder (m/w/d)", "Job mit Zukunft!", "Teamverstärkung gesucht", "Studentische Hilfskraft",
    "Schülerjob in den Ferien", "Praktikum (m/w/d)", "Duales Studium 2026", "Ferienjob", "Springer (m/w/d)",
    "Saisonkraft Sommer 2026", "Mitarbeiter Allgemein (m/w/d)", "Top-Job in Vollzeit", "Wir suchen Dich!",
    "Mitarbeiter für alles", "Assistenz (m/w/d)", "Neue Herausforderung gesucht?", "Karrierestart bei uns",
    "Job für Rentner", "Homeoffice Job", "Produktionsmitarbeiter gesucht ab sofort", "Helfer (m/w/d)",
    "Fachkraft (m/w/d)", "Spezialist (m/w/d)", "Experte (m/w/d)", "Berater (m/w/d)", "Manager (m/w/d)",
    "Leitung (m/w/d)", "Sachbearbeiter (m/w/d)", "Ausbildung 2026", "Jobs in der Region", "Stellenangebot",
    "Verstärkung für unser Team",
]


# Colloquial titles the catalog does not spell out, labelled by hand with their 2-digit KldB domain only
# (their level depends on the posting): the closest thing to real postings in this set.
COLLOQUIAL = [
    ("Java Entwickler (m/w/d)", "43"), ("Fullstack Developer", "43"), ("Backend Developer Python", "43"),
    ("SAP Berater (m/w/d)", "43"), ("IT Support Mitarbeiter", "43"), ("LKW Fahrer CE (m/w/d)", "52"),
    ("Staplerfahrer Lager", "52"), ("Busfahrer ÖPNV", "52"), ("Sachbearbeiter Buchhaltung", "72"),
    ("Buchhalterin Lohn", "72"), ("Steuerberater Kanzlei", "72"), ("Kundenberater Bank", "72"),
    ("Controller Finanzen", "72"), ("Pflegefachkraft Intensivstation", "81"), ("Physiotherapeut Praxis", "81"),
    ("Zahnmedizinische Fachangestellte Praxis", "81"), ("Verkäuferin Bäckerei", "62"),
    ("Reinigungskraft Büro", "54"), ("Elektriker Gebäudetechnik", "26"), ("Kfz Mechaniker", "25"),
    ("Lagermitarbeiter (m/w/d)", "51"), ("Paketzusteller", "51"), ("Erzieherin Kita", "83"),
    ("Heilerziehungspfleger Wohngruppe", "83"), ("Altenpflegehelfer ambulant", "82"), ("Friseurin Salon", "82"),
    ("Küchenhilfe Restaurant", "29"), ("Servicekraft Restaurant", "63"), ("Lehrer Mathematik Gymnasium", "84"),
    ("Bauhelfer Hochbau", "32"), ("Schweißer Stahlbau", "24"), ("Tischler Möbelbau", "22"),
    ("Gärtner Landschaftsbau", "12"), ("Sicherheitsmitarbeiter Objektschutz", "53"),
    ("Personalreferent HR", "71"), ("Immobilienmakler", "61"), ("Rechtsanwalt Arbeitsrecht", "73"),
    ("Architekt Hochbau", "31"), ("Bauingenieur Tiefbau", "31"), ("Marketing Manager Online", "92"),
]


@dataclass(frozen=True)
class Labelled:
    title: str
    kldb: str | None  # the 5-digit label; None for colloquial titles and negatives
    kind: str
    domain: str | None = None  # the 2-digit label; None only for negatives

    @property
    def positive(self) -> bool:
        return self.domain is not None


def split_compound(word: str) -> str | None:
    low = word.lower()
    for head in HEADS:
        i = low.rfind(head)
        if i > 2 and i + len(head) == len(low):
            return word[:i] + "-" + word[i].upper() + word[i + 1 :]
    return None


def dress(base: str, rng: random.Random, n_noise: int) -> str:
    parts = [base]
    pools = [GENDER, PLACES, COMPANIES, SALARY, CONTRACT, START, TAILS]
    for pool in rng.sample(pools, k=min(n_noise, len(pools))):
        parts.append(rng.choice(pool))
    return "".join(parts)


def labelled_set(professions: Sequence[NamedProfession], n: int, seed: int) -> list[Labelled]:
    rng = random.Random(seed)
    named = [p for p in professions if not p.is_occupation]
    sample = rng.sample(named, k=min(n, len(named)))
    out: list[Labelled] = []
    for i, prof in enumerate(sample):
        masculine = clean_job_title(prof.name) or prof.name
        kind = ("decorated", "raw_name", "seniority", "compound")[i % 4]
        if kind == "raw_name":
            title = dress(prof.name, rng, rng.randint(1, 3))
        elif kind == "decorated":
            title = dress(masculine, rng, rng.randint(1, 4))
        elif kind == "seniority":
            title = dress(rng.choice(SENIORITY) + masculine, rng, rng.randint(1, 2))
        else:
            words = masculine.split(" ")
            split = split_compound(words[0])
            if split is None:
                kind, title = "decorated", dress(masculine, rng, 2)
            else:
                title = dress(" ".join([split, *words[1:]]), rng, rng.randint(1, 2))
        out.append(Labelled(title, prof.kldb, kind, prof.domain_code))
    out += [Labelled(t, None, "colloquial", domain) for t, domain in COLLOQUIAL]
    out += [Labelled(t, None, "negative") for t in NEGATIVES]
    return out


# -- helpers ------------------------------------------------------------------------------------------------


class CachedEncoder:
    """Returns vectors computed up front, so stage timings measure the pipeline, not the model."""

    def __init__(self, model_id: str, table: dict[str, np.ndarray]) -> None:
        self.model_id = model_id
        self.window_tokens = 256
        self.table = table

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def encode_batched(encoder: TextEncoder, texts: Sequence[str], batch: int = 128) -> np.ndarray:
    """In batches: the onnx encoder runs one forward pass per call, padded to the longest text."""
    return np.concatenate([encoder.encode(texts[i : i + batch]) for i in range(0, len(texts), batch)])


def catalog_vectors(encoder: TextEncoder, texts: list[str], version: str) -> np.ndarray:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tag = hashlib.sha256(f"{encoder.model_id}|{version}|{len(texts)}".encode()).hexdigest()[:16]
    path = CACHE_DIR / f"catalog_{tag}.npy"
    if path.exists():
        return np.load(path)
    t0 = time.monotonic()
    vectors = encode_batched(encoder, texts)
    print(f"  encoded {len(texts)} distinct catalog names in {time.monotonic() - t0:.1f} s (cached to {path.name})")
    np.save(path, vectors)
    return vectors


def histogram(rows: list[tuple[float, bool]], lo: float = 0.3, step: float = 0.05) -> None:
    print(f"  {'top-1 score':>13} {'titles':>7} {'right':>6} {'wrong':>6} {'prec.':>6}   {'>= lower edge: prec.':>20} {'share':>6}")
    total = len(rows)
    edges = np.arange(lo, 1.0001, step)
    for edge in edges[::-1]:
        upper = edge + step
        inside = [ok for s, ok in rows if edge <= s < upper or (upper > 1.0 and s >= edge)]
        above = [ok for s, ok in rows if s >= edge]
        if not inside and not above:
            continue
        right = sum(inside)
        prec = right / len(inside) if inside else float("nan")
        cum = sum(above) / len(above) if above else float("nan")
        print(f"  [{edge:4.2f}, {min(upper, 1.0):4.2f}) {len(inside):7d} {right:6d} {len(inside) - right:6d} "
              f"{prec:6.2f}   {cum:20.2f} {len(above) / total:6.2f}")
    below = [ok for s, ok in rows if s < lo]
    below_label = f"< {lo:.2f}"
    print(f"  {below_label:>13} {len(below):7d} {sum(below):6d} {len(below) - sum(below):6d}")


def suggest(rows: list[tuple[float, bool]], precision: float, recall: float) -> tuple[float, float]:
    """Thresholds from scored outcomes (score, right?), on a 0.01 grid.

    accept: the lowest score from which on, all the way up, at least `precision` of the titles are right
    (accepting is only safe where the top-1 is nearly always right);
    verify: the highest score that still keeps `recall` of all right top-1 answers at or above it (below
    verify a title is `no_match` without asking the LLM, so few right answers may live there).
    """
    grid = np.round(np.arange(0.30, 1.0, 0.01), 2)
    accept = 1.0
    for t in grid[::-1]:
        above = [ok for sc, ok in rows if sc >= t]
        if above and sum(above) / len(above) < precision:
            break
        accept = float(t)
    right = sorted(sc for sc, ok in rows if ok)
    verify = float(np.floor(right[int(len(right) * (1 - recall))] * 100) / 100) if right else accept
    return accept, min(verify, accept)


# -- main ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The benchmark needs a KldB directory; TY_KLDB_CSV=seed (the tests' small catalog) does not apply here.
    env_csv = os.environ.get("TY_KLDB_CSV")
    ap.add_argument("--csv", default=env_csv if env_csv and env_csv != SEED else str(DEFAULT_CSV))
    ap.add_argument("--titles", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--baseline-titles", type=int, default=40, help="titles timed through the slow baseline")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--model", default=DEFAULT_EMBED_MODEL,
                    help="sentence-transformers model name or path (default: the bundled offline model)")
    ap.add_argument("--backend", default=DEFAULT_EMBED_BACKEND, choices=["onnx", "sentence-transformers"],
                    help="local embedding backend (default: the pipeline's; onnx exports on first use)")
    args = ap.parse_args()

    print(f"catalog: {args.csv}")
    kldb = load_kldb_catalog(args.csv)
    entries = list(kldb.entries)
    snapshot = CatalogSnapshot.from_professions(entries)
    t0 = time.monotonic()
    index = build_alias_index(entries)
    print(f"  {len(entries)} entries ({len(kldb.professions)} named professions + occupations), "
          f"{len(index)} alias keys built in {time.monotonic() - t0:.1f} s")

    encoder = EmbedderResource(backend=args.backend, model=args.model, batch_size=128).build_encoder()
    texts = sorted({embed_text_for(p.name) for p in entries})
    vectors = catalog_vectors(encoder, texts, snapshot.version)
    by_text = dict(zip(texts, vectors, strict=True))
    ids = tuple(p.profession_id for p in entries)
    matrix = CatalogMatrix(ids, np.stack([by_text[embed_text_for(p.name)] for p in entries]), encoder.model_id)

    labelled = labelled_set(entries, args.titles, args.seed)
    postings = [PostingTitle(i, item.title) for i, item in enumerate(labelled)]
    groups = group_by_title(postings)
    print(f"labelled set: {len(labelled)} titles ({Counter(x.kind for x in labelled)}), seed {args.seed}, "
          f"{len(groups)} distinct cleaned titles")

    # Encode every distinct cleaned title once, up front, and time it on its own.
    distinct = [g.title for g in groups if g.key]
    t0 = time.monotonic()
    title_vectors = encode_batched(encoder, distinct)
    encode_s = time.monotonic() - t0
    cached = CachedEncoder(encoder.model_id, dict(zip(distinct, title_vectors, strict=True)))

    # 1. Calibration probe: wide-open thresholds, so every title that reaches the embedding stage keeps
    #    its top-k and the score distribution can be measured.
    probe_settings = MappingSettings(thresholds=MatchThresholds(accept=1.0, verify=-1.0), top_k=args.top_k,
                                     llm_verify=False, encode_batch=512)
    probe = TitleMapper(snapshot, InMemorySources(index), probe_settings,
                        embedding=lambda: EmbeddingBackend(cached, matrix)).run(groups)
    probe_by_posting = {pid: r for r in probe.results for pid in r.group.posting_ids}
    profs = snapshot.professions
    emb_rows: list[tuple[float, bool]] = []
    domain_rows: list[tuple[float, bool]] = []
    neg_scores: list[float] = []
    for i, item in enumerate(labelled):
        r = probe_by_posting[i]
        if not r.candidates:
            continue
        top = r.candidates[0]
        if not item.positive:
            neg_scores.append(top.score)
        elif item.kldb is None:
            domain_rows.append((top.score, profs[top.profession_id].domain_code == item.domain))
        else:
            emb_rows.append((top.score, profs[top.profession_id].kldb == item.kldb))
    print(f"\nembedding stage ({encoder.model_id}): {len(emb_rows)} labelled titles reach it; "
          "top-1 score distribution (right = top-1 has the label's 5-digit KldB code)")
    histogram(emb_rows)
    if domain_rows:
        print(f"  colloquial titles reaching it: {len(domain_rows)}, top-1 in the right domain (score: right/wrong):")
        print("    " + ", ".join(f"{sc:.2f}:{'R' if ok else 'w'}" for sc, ok in sorted(domain_rows, reverse=True)))
    if neg_scores:
        q = np.quantile(neg_scores, [0.1, 0.5, 0.9])
        print(f"  generic non-profession titles reaching it: {len(neg_scores)}, top-1 score p10/p50/p90 = "
              f"{q[0]:.2f}/{q[1]:.2f}/{q[2]:.2f}, max {max(neg_scores):.2f}")
    # Calibrate on everything that reached the stage: dressed-up catalog names (right = 5-digit code),
    # colloquial titles (right = domain) and generic titles (never right: nothing should be accepted).
    everything = emb_rows + domain_rows + [(sc, False) for sc in neg_scores]
    accept_s, verify_s = suggest(everything, precision=0.98, recall=0.98)
    print(f"  suggested: accept >= {accept_s:.2f} (from there up >= 98 % of top-1 answers right, generic titles "
          f"counted as wrong), verify >= {verify_s:.2f} (keeps 98 % of the right top-1 answers above it)")
    th, calibrated = thresholds_for(encoder.model_id)
    print(f"  configured for {encoder.model_id}: accept {th.accept}, verify {th.verify} (calibrated: {calibrated})")

    # 2. The asset's behaviour without the LLM: configured thresholds, the band left unverified.
    settings = MappingSettings(thresholds=th, top_k=args.top_k, llm_verify=False, encode_batch=512)
    sources = InMemorySources(index)
    t0 = time.monotonic()
    report = TitleMapper(snapshot, sources, settings, fingerprint="bench",
                         embedding=lambda: EmbeddingBackend(cached, matrix)).run(groups)
    pipeline_s = time.monotonic() - t0
    by_posting = {pid: r for r in report.results for pid in r.group.posting_ids}

    print("\naccuracy without the LLM (configured thresholds; unresolved counts as wrong):")
    print(f"  {'kind':<10} {'titles':>6} {'resolved':>9} {'top1-5d':>8} {'top1-2d':>8} {'prec-5d':>8} "
          f"{'prec-2d':>8} {'to LLM':>7} {'in top-k':>9}")
    statuses: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for kind in ["decorated", "raw_name", "seniority", "compound", "all", "colloquial", "negative"]:
        items = [(i, x) for i, x in enumerate(labelled) if (x.kind == kind or (kind == "all" and x.kldb))]
        n = len(items)
        resolved = right5 = right2 = to_llm = in_topk = 0
        for i, item in items:
            r = by_posting[i]
            if kind == "all":
                statuses[str(r.status)] += 1
            if r.status in RESOLVED and r.profession_id:
                resolved += 1
                if item.kldb and profs[r.profession_id].kldb == item.kldb:
                    right5 += 1
                if item.domain and profs[r.profession_id].domain_code == item.domain:
                    right2 += 1
            if r.status == BerufenetStatus.EMBEDDING_UNVERIFIED:
                to_llm += 1
                # In the top-k: the label's code (professions) or its domain (colloquial titles).
                found = [profs[c.profession_id].kldb if item.kldb else profs[c.profession_id].domain_code
                         for c in r.candidates]
                if (item.kldb or item.domain) in found:
                    in_topk += 1
        if kind == "all":
            totals.update(titles=n, resolved=resolved, right5=right5, right2=right2, to_llm=to_llm)
        five = [f"{right5 / n:8.1%}", f"{(right5 / resolved if resolved else 0):8.1%}"]
        if kind in ("colloquial", "negative"):
            five = [f"{'-':>8}", f"{'-':>8}"]
        print(f"  {kind:<10} {n:6d} {resolved / n:9.1%} {five[0]} {right2 / n:8.1%} {five[1]} "
              f"{(right2 / resolved if resolved else 0):8.1%} {to_llm / n:7.1%} "
              f"{(in_topk / to_llm if to_llm else 0):9.1%}")
    print(f"  statuses (positives): {dict(statuses.most_common())}")
    print(f"  resolved without the LLM: {totals['resolved'] / totals['titles']:.1%} of labelled professions; "
          f"{totals['to_llm'] / totals['titles']:.1%} would be verified by the LLM")

    # -- speed ----------------------------------------------------------------------------------------------
    n_titles = len(groups)
    print(f"\nspeed on {os.cpu_count()} cores, {n_titles} distinct titles, catalog {matrix.size} x "
          f"{matrix.vectors.shape[1]}:")
    print(f"  stages: lookup {report.seconds['lookup']:.3f} s, memory {report.seconds['memory']:.3f} s, "
          f"embedding search {report.seconds['search']:.3f} s ({report.encoded_titles} titles), "
          f"pipeline total {pipeline_s:.3f} s")
    ours = n_titles / pipeline_s
    print(f"  non-LLM stages (model time excluded): {ours:,.0f} titles/s")
    print(f"  title encoding ({encoder.model_id}): {len(distinct) / encode_s:,.0f} titles/s ({encode_s:.1f} s for "
          "all distinct titles; the asset encodes only those the lookups leave)")
    emb_titles = report.encoded_titles
    with_model = n_titles / (pipeline_s + encode_s * emb_titles / max(1, len(distinct)))
    print(f"  non-LLM stages including encoding the {emb_titles} titles that need it: {with_model:,.0f} titles/s")

    # Baseline: the replaced system's per-title Python loop over the catalog vectors.
    probe_titles = distinct[: args.baseline_titles]
    probe_vectors = [cached.table[t] for t in probe_titles]
    t0 = time.monotonic()
    base = per_title_loop_baseline(probe_vectors, matrix, args.top_k)
    base_rate = len(probe_titles) / (time.monotonic() - t0)
    t0 = time.monotonic()
    fast = rank_candidates(np.stack(probe_vectors), matrix, args.top_k)
    fast_s = time.monotonic() - t0
    assert [c[0].profession_id for c in base] == [c[0].profession_id for c in fast], "baseline disagrees"
    all_vectors = np.stack([cached.table[t] for t in distinct])
    t0 = time.monotonic()
    rank_candidates(all_vectors, matrix, args.top_k)
    search_rate = len(distinct) / (time.monotonic() - t0)
    print(f"  embedding search, per-title Python loop (replaced system, {len(probe_titles)} titles): "
          f"{base_rate:,.1f} titles/s")
    print(f"  embedding search, one matrix product per batch ({len(distinct)} titles): {search_rate:,.0f} titles/s "
          f"-> {search_rate / base_rate:,.0f}x the baseline (same top-1 on the probe, {fast_s * 1000:.1f} ms)")
    print(f"  whole non-LLM pipeline vs. baseline search alone: {ours / base_rate:,.0f}x")

    # 3. A second run over the same titles: accepted titles are learned aliases, settled failures are
    #    remembered under the same fingerprint; nothing is encoded again.
    sources.remember(report.results, "bench")
    calls: list[int] = []

    class CountingEncoder(CachedEncoder):
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            calls.append(len(texts))
            return super().encode(texts)

    again = TitleMapper(
        snapshot, sources, settings, fingerprint="bench",
        embedding=lambda: EmbeddingBackend(CountingEncoder(encoder.model_id, cached.table), matrix),
    ).run(groups)
    remembered = sum(1 for r in again.results if r.remembered)
    print(f"  second run over the same titles: {sum(calls)} titles encoded, {remembered} answered from memory, "
          f"{n_titles / max(sum(again.seconds.values()), 1e-9):,.0f} titles/s")

if __name__ == "__main__":
    main()
