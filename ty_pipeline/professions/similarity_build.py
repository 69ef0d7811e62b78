"""`profession_similarity` against the warehouse: catalog, name vectors, the matrix computation, the write."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.professions.partition_run import CatalogMissing
from ty_pipeline.professions.similarity import similar_professions
from ty_pipeline.professions.vectors import ensure_name_vectors
from ty_pipeline.warehouse import berufenet_store as store


@dataclass
class SimilarityBuild:
    professions: int = 0
    with_vector: int = 0
    pairs: int = 0
    new_vectors: int = 0
    model: str = ""


def build_similarity(
    engine: Engine,
    *,
    open_encoder: Callable[[], AbstractContextManager[TextEncoder]],
    now: Callable[[], datetime],
    top_n: int,
    min_postings: int,
    min_score: float,
    log: Callable[[str], None] = lambda _m: None,
) -> SimilarityBuild:
    catalog = store.load_catalog(engine)
    if catalog.empty:
        raise CatalogMissing("The profession catalog is empty. Materialize `berufenet_catalog` first.")
    profs = catalog.snapshot.professions
    ids = sorted(profs)
    if min_postings > 0:
        counts = store.mapped_posting_counts(engine)
        ids = [pid for pid in ids if counts.get(pid, 0) >= min_postings]
    build = SimilarityBuild(professions=len(ids))
    with open_encoder() as encoder:
        build.model = encoder.model_id
        vectors, stats = ensure_name_vectors(engine, encoder, catalog, now, log=log)
    build.new_vectors = stats.new
    dim = next(iter(vectors.values())).shape[0] if vectors else 1
    matrix = np.zeros((len(ids), dim), dtype=np.float32)
    has = np.zeros(len(ids), dtype=bool)
    for i, pid in enumerate(ids):
        vector = vectors.get(catalog.embed_hash_of[pid])
        if vector is not None:
            matrix[i], has[i] = vector, True
    build.with_vector = int(has.sum())
    log(f"similarity over {len(ids)} professions ({build.with_vector} with a {build.model} name vector)")
    pairs = similar_professions(ids, [profs[pid].kldb for pid in ids], matrix, has, top_n=top_n, min_score=min_score)
    store.replace_similarity(
        engine,
        [{"profession_id": p.profession_id, "similar_id": p.similar_id, "rank": p.rank, "score": p.score,
          "kldb_score": p.kldb_score, "cosine": p.cosine} for p in pairs],
        now(),
    )
    build.pairs = len(pairs)
    return build
