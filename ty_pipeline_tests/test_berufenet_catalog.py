"""berufenet_catalog and profession_similarity on SQLite and PostgreSQL: the seed catalog and the official
KldB CSV (counts), replace semantics, name embeddings cached by content hash, similarity scores."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import CATALOG_CHECK, berufenet_catalog, catalog_check
from ty_pipeline.assets.profession_similarity import profession_similarity, similarity_check
from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.professions.catalog import DEFAULT_SEED_CATALOG, SEED, embed_text_for
from ty_pipeline.professions.similarity import audit_similarity, kldb_proximity, similar_professions
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.berufenet_store import similarity_rows
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.schema import berufenet_aliases, embeddings
from ty_pipeline.warehouse.schema import berufenet_catalog as catalog_table
from ty_pipeline.warehouse.schema import profession_similarity as similarity_table
from ty_pipeline_tests.berufenet_fakes import (
    ENCODE_CALLS,
    FAKE_MODEL_ID,
    encoded,
    fake_embedder,
    trigram_vector,
)
from ty_pipeline_tests.paths import KLDB_CSV


@pytest.fixture(autouse=True)
def _reset_encoder_log() -> None:
    ENCODE_CALLS.clear()


class TinyEncoder:
    """8-dimensional hashed vectors: the 20,000-name catalog test is about rows and counts, not similarity."""

    model_id = "fake:tiny"
    window_tokens = 512

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raw = np.array([list(hashlib.sha256(t.encode()).digest()[:8]) for t in texts], dtype=np.float32) - 127.5
        return raw / np.linalg.norm(raw, axis=1, keepdims=True)


class TinyEmbedder(EmbedderResource):
    def build_encoder(self, ollama: OllamaResource | None = None) -> TextEncoder:
        return TinyEncoder()


def build(
    warehouse_url: str, catalog: ProfessionCatalogResource | None = None, embedder: EmbedderResource | None = None,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [berufenet_catalog],
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": embedder or fake_embedder(),
                   "profession_catalog": catalog or ProfessionCatalogResource(kldb_csv=SEED),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        run_config=run_config,
    )
    assert result.success
    return result


def meta(result: dg.ExecuteInProcessResult, node: str = "berufenet_catalog") -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def table_count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def seed_rows() -> list[dict[str, str]]:
    with open(DEFAULT_SEED_CATALOG, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def test_seed_catalog_is_written_with_aliases_and_names_are_embedded_once(warehouse_url: str) -> None:
    first = build(warehouse_url)
    engine = get_engine(warehouse_url)
    rows = seed_rows()
    m = meta(first)
    assert m["entries"] == len(rows) == table_count(engine, catalog_table) and m["entries_seed"] == len(rows)
    levels = Counter(r["qualification_level"] for r in rows)
    assert {lv: m[f"level_{lv}"] for lv in (1, 2, 3, 4)} == {lv: levels[str(lv)] for lv in (1, 2, 3, 4)}
    distinct = len({embed_text_for(r["name"]) for r in rows})
    assert m["new_embeddings"] == distinct and m["cached_embeddings"] == 0 and len(encoded()) == distinct
    assert [e.passed for e in first.get_asset_check_evaluations() if e.check_name == CATALOG_CHECK] == [True]
    with engine.connect() as conn:
        koch = conn.execute(sa.select(catalog_table).where(catalog_table.c.profession_id == "29302-100")).one()
        alias = conn.execute(sa.select(berufenet_aliases.c.profession_id)
                             .where(berufenet_aliases.c.alias_key == "koechin")).scalars().all()
        stored = conn.execute(sa.select(embeddings.c.text, embeddings.c.vector)
                              .where(embeddings.c.text_hash == koch.embed_hash, embeddings.c.model == FAKE_MODEL_ID)).one()
    assert (koch.name, koch.kldb, koch.qualification_level, koch.domain_code, koch.source) == (
        "Koch/Köchin", "29302", 2, "29", "seed")
    assert alias == ["29302-100"] and stored.text == koch.embed_text
    assert np.allclose(np.frombuffer(stored.vector, dtype="<f4"), trigram_vector(koch.embed_text))

    # A rebuild encodes nothing: every name's vector is found by its content hash.
    ENCODE_CALLS.clear()
    second = build(warehouse_url)
    assert meta(second)["new_embeddings"] == 0 and meta(second)["cached_embeddings"] == distinct
    assert encoded() == []


def test_catalog_is_replaced_not_merged(warehouse_url: str, tmp_path: Path) -> None:
    build(warehouse_url)
    small = tmp_path / "small.csv"
    small.write_text("profession_id;name;kldb;qualification_level\n29302-100;Koch/Köchin;29302;2\n"
                     "43414-100;Testberuf/in;43414;4\n", encoding="utf-8")
    # Far smaller than the stored catalog: accepted only because this run says so (min_share_of_stored 0).
    result = build(warehouse_url, ProfessionCatalogResource(kldb_csv=SEED, seed_csv=str(small)),
                   run_config={"ops": {"berufenet_catalog": {"config": {"min_share_of_stored": 0}}}})
    engine = get_engine(warehouse_url)
    with engine.connect() as conn:
        ids = conn.execute(sa.select(catalog_table.c.profession_id).order_by(catalog_table.c.profession_id)).scalars()
        alias_ids = set(conn.execute(sa.select(berufenet_aliases.c.profession_id)).scalars())
        assert list(ids) == ["29302-100", "43414-100"]
    assert alias_ids == {"29302-100", "43414-100"}
    assert meta(result)["new_embeddings"] == 1  # only "Testberuf" is new; Koch came from the store


def test_official_kldb_csv_gives_the_full_catalog(warehouse_url: str) -> None:
    assert KLDB_CSV.is_file(), f"official KldB CSV missing at {KLDB_CSV}"
    result = build(warehouse_url, ProfessionCatalogResource(kldb_csv=str(KLDB_CSV)), TinyEmbedder())
    m = meta(result)
    # 18,838 named professions + the 1,301 occupations minus the one marked "(weggefallen)".
    assert (m["entries_kldb"], m["entries_kldb_occupation"], m["occupations_in_file"]) == (18838, 1300, 1301)
    assert m["entries"] == 20138 and sum(m[f"level_{lv}"] for lv in (1, 2, 3, 4)) == 20138
    assert m["domains"] == 37 and m["alias_keys"] > 100_000
    engine = get_engine(warehouse_url)
    assert table_count(engine, catalog_table) == 20138
    with engine.connect() as conn:
        occupation_levels = Counter(conn.execute(
            sa.select(catalog_table.c.qualification_level).where(catalog_table.c.source == "kldb_occupation")
        ).scalars())
        dev = conn.execute(sa.select(berufenet_aliases.c.profession_id)
                           .where(berufenet_aliases.c.alias_key == "softwareentwickler")).scalars().all()
        military = conn.execute(sa.select(catalog_table.c.kldb).where(catalog_table.c.profession_id == "01104")).one()
    # docs/wire_formats.md §3.2: 1 -> 64, 2 -> 420, 3 -> 447, 4 -> 370 over the 1,301 codes (81122, level 2, withdrawn).
    assert occupation_levels == {1: 64, 2: 419, 3: 447, 4: 370}
    assert dev == ["43414-102"] and military.kldb == "01104"
    assert m["new_embeddings"] == m["distinct_names"] and m["failed_embeddings"] == 0


def test_profession_similarity_combines_kldb_and_name_cosine(warehouse_url: str) -> None:
    build(warehouse_url)
    result = dg.materialize(
        [profession_similarity],
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": fake_embedder(),
                   "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        run_config={"ops": {"profession_similarity": {"config": {"top_n": 3}}}},
    )
    assert result.success
    engine = get_engine(warehouse_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(similarity_table)).mappings().all()
        names = dict(conn.execute(sa.select(catalog_table.c.profession_id, catalog_table.c.embed_text)).all())
        kldb = dict(conn.execute(sa.select(catalog_table.c.profession_id, catalog_table.c.kldb)).all())
    assert rows and meta(result, "profession_similarity")["pairs"] == len(rows)
    per = Counter(r["profession_id"] for r in rows)
    assert max(per.values()) <= 3 and all(r["profession_id"] != r["similar_id"] for r in rows)
    dev = sorted((r for r in rows if r["profession_id"] == "43414-102"), key=lambda r: r["rank"])
    assert [r["rank"] for r in dev] == [1, 2, 3]
    assert dev[0]["similar_id"] == "43414" and dev[0]["kldb_score"] == 1.0  # same five digits
    for r in dev:  # recompute each score independently
        cos = float(trigram_vector(names[r["profession_id"]]) @ trigram_vector(names[r["similar_id"]]))
        a, b = kldb[r["profession_id"]], kldb[r["similar_id"]]
        k = 1.0 if a == b else 0.7 if a[:3] == b[:3] else 0.3 if a[:2] == b[:2] else 0.0
        assert r["kldb_score"] == k and r["score"] == pytest.approx(0.4 * k + 0.6 * cos, abs=1e-4)
    assert [r["score"] for r in dev] == sorted((r["score"] for r in dev), reverse=True)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "similarity_consistent" and check.passed
    assert check.metadata["rows"].value == len(rows)

    # A catalog rebuilt without a profession leaves stale pairs until similarity runs again: the check says so.
    with engine.begin() as conn:
        conn.execute(sa.delete(catalog_table).where(catalog_table.c.profession_id == "43414"))
    rows_now, ids = similarity_rows(engine)
    stale = audit_similarity(rows_now, ids)
    assert not stale.passed and stale.unknown_ids == sum(1 for r in rows if "43414" in (r["profession_id"], r["similar_id"]))


def test_similarity_audit_names_each_kind_of_inconsistency() -> None:
    ids = {"a", "b", "c"}
    good = [("a", "b", 1, 0.9), ("a", "c", 2, 0.5), ("b", "a", 1, 0.9)]
    assert audit_similarity(good, ids).passed
    bad = audit_similarity(
        [("a", "a", 1, 0.9), ("b", "c", 1, 0.2), ("b", "a", 2, 0.8), ("c", "a", 2, 0.3), ("c", "x", 1, 1.7)], ids
    )
    assert (bad.self_pairs, bad.out_of_order, bad.rank_gaps, bad.unknown_ids, bad.out_of_range) == (1, 1, 0, 1, 1)
    assert not audit_similarity([("a", "b", 1, 0.9), ("a", "c", 3, 0.5)], ids).passed  # rank 2 missing
    assert len(bad.examples) >= 3 and not bad.passed

    # As a check result: the reason counts each kind, the table names the professions (id and catalog name).
    result = similarity_check(bad, {"a": "Koch/Köchin", "b": "Bäcker/in"})
    assert not result.passed and result.description == result.metadata["reason"].value
    assert result.metadata["reason"].value.startswith("the stored similarity table (5 rows) is inconsistent (expected "
                                                      "0 of each): 1 self pairs, 1 ids not in the catalog")
    table = result.metadata["examples"].value
    assert "| profession_id | name | pair | problem |" in table
    assert "| a | Koch/Köchin | a -> a | self pair |" in table and "| c | (not in the catalog) | c -> x |" in table
    assert "reason" not in similarity_check(audit_similarity(good, ids), {}).metadata


def test_catalog_check_names_the_profession_names_without_a_vector() -> None:
    assert catalog_check(3, 3, []).passed
    failed = catalog_check(3, 1, ["Koch/Köchin", "Bäcker/in"])
    assert not failed.passed and failed.metadata["reason"].value.startswith(
        "2 of 3 distinct profession names have no name vector (2 returned an unusable vector; expected 0)")
    assert "| Koch/Köchin | no usable vector (NaN or zero) |" in failed.metadata["examples"].value


def test_kldb_proximity_and_similarity_without_vectors() -> None:
    codes = np.array([43414, 43412, 43313, 72112, 43414])
    prox = kldb_proximity(codes[:1], codes)
    assert prox.tolist() == [[1.0, 0.7, 0.3, 0.0, 1.0]]
    vectors = np.zeros((3, 4), dtype=np.float32)
    pairs = similar_professions(["a", "b", "c"], ["43414", "43412", "72112"], vectors, np.zeros(3, dtype=bool),
                                top_n=5)
    # Without name vectors the KldB score alone counts; 0.0 is below the 0.15 floor and dropped.
    assert [(p.profession_id, p.similar_id, p.score, p.cosine) for p in pairs] == [
        ("a", "b", 0.7, None), ("b", "a", 0.7, None)]


def test_similarity_memory_stays_bounded_as_the_catalog_grows() -> None:
    """A block's temporaries are ~46 bytes per cell: 1,024 rows of the full KldB catalog (23,000
    professions) took profession_similarity to 1.8 GiB RSS (bench_scale.py). The block shrinks with the
    catalog, and the pairs do not depend on it. numpy reports its buffers to tracemalloc."""
    import tracemalloc

    rng = np.random.default_rng(7)
    n = 6000
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(n)]
    codes = [f"{rng.integers(11, 99)}{rng.integers(100, 999)}" for _ in range(n)]
    has = np.ones(n, dtype=bool)
    has[::7] = False
    tracemalloc.start()
    try:
        pairs = similar_professions(ids, codes, vectors, has, top_n=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 2^21 cells (349 rows) x ~60 bytes, the inputs and the 18,000 pairs: well below 1,024 rows x 6,000.
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    # Blocks of 64 rows and of 5 rows: the same pairs (BLAS sums a block's products in its own order, so
    # the scores agree to float precision, not bit for bit).
    by_64 = similar_professions(ids[:900], codes[:900], vectors[:900], has[:900], top_n=3, block=64)
    by_5 = similar_professions(ids[:900], codes[:900], vectors[:900], has[:900], top_n=3, max_block_cells=900 * 5)
    assert [(p.profession_id, p.rank) for p in by_64] == [(p.profession_id, p.rank) for p in by_5]
    assert [p.score for p in by_64] == pytest.approx([p.score for p in by_5], abs=1e-5)
    assert len(pairs) == 3 * n


def test_name_vectors_stored_meanwhile_by_another_run_are_kept(warehouse_url: str) -> None:
    """The batched insert meets a vector another run stored first: the first writer wins, nothing fails."""
    from datetime import datetime

    from ty_pipeline.warehouse.berufenet_store import save_name_vectors
    from ty_pipeline.warehouse.engine import ensure_schema

    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    first = np.array([1, 0, 0, 0], dtype=np.float32)
    save_name_vectors(engine, "m", [("h1", "Koch", first)], datetime(2026, 11, 1))
    save_name_vectors(engine, "m", [("h1", "Koch", first[::-1].copy()), ("h2", "Maurer", first)], datetime(2026, 11, 2))
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(embeddings.c.text_hash, embeddings.c.vector)).all())
    assert set(stored) == {"h1", "h2"} and np.frombuffer(stored["h1"], dtype="<f4").tolist() == [1, 0, 0, 0]


def test_the_catalog_build_streams_name_vectors_without_reading_or_keeping_any(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build only makes sure every name has a vector: committed batch by batch, none held in memory."""
    from datetime import datetime

    from ty_pipeline.professions import vectors as name_vectors
    from ty_pipeline.warehouse.berufenet_store import load_catalog

    build(warehouse_url)  # the seed catalog, all names embedded
    engine = get_engine(warehouse_url)
    with engine.begin() as conn:  # lose a few vectors: the next build must encode exactly those
        lost = conn.execute(sa.select(catalog_table.c.embed_hash).distinct().limit(5)).scalars().all()
        conn.execute(sa.delete(embeddings).where(embeddings.c.text_hash.in_(lost)))

    def no_vector_reads(*_a: object, **_k: object) -> None:
        raise AssertionError("the catalog build read stored vectors")

    monkeypatch.setattr(name_vectors, "load_name_vectors", no_vector_reads)
    ENCODE_CALLS.clear()
    with fake_embedder().open_encoder() as encoder:
        kept, stats = name_vectors.ensure_name_vectors(engine, encoder, load_catalog(engine), lambda: datetime(2026, 11, 1),
                                                       commit_every=2, keep_vectors=False)
    assert kept == {} and stats.new == 5 and len(encoded()) == 5
    assert stats.cached == len({r["embed_hash"] for r in catalog_rows(engine)}) - 5
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(embeddings)
                            .where(embeddings.c.text_hash.in_(lost))).scalar_one() == 5


def catalog_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(catalog_table))]
