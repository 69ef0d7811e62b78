"""Catalog-name vectors: computed once per (name text, model) and kept in the shared content-addressed
`embeddings` store, so a catalog rebuild or a mapping run encodes only names it has never seen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from ty_pipeline.clients.embedder import TextEncoder, chunk_chars_for, encode_texts
from ty_pipeline.domain.profession_matching import CatalogMatrix
from ty_pipeline.domain.progress import Progress
from ty_pipeline.warehouse.berufenet_store import (
    StoredCatalog,
    load_name_vectors,
    name_hashes_with_vectors,
    save_name_vectors,
)


@dataclass
class NameVectorStats:
    cached: int = 0
    new: int = 0
    failed: list[str] = field(default_factory=list)  # texts the model returned no usable vector for
    encode_calls: int = 0


def ensure_name_vectors(
    engine: Engine,
    encoder: TextEncoder,
    catalog: StoredCatalog,
    now: Callable[[], datetime],
    *,
    batch_size: int = 64,
    commit_every: int = 2048,
    log: Callable[[str], None] = lambda _m: None,
    keep_vectors: bool = True,
) -> tuple[dict[str, np.ndarray], NameVectorStats]:
    """embed_hash -> vector for every catalog name, encoding (and committing) only the missing ones.

    `keep_vectors=False` (the catalog build, which only has to make sure the vectors exist) reads no
    stored vector and keeps none of the new ones: each batch of `commit_every` names is encoded,
    committed and dropped, so memory does not grow with the catalog. The empty dict is returned then.
    """
    stats = NameVectorStats()
    if keep_vectors:
        vectors = load_name_vectors(engine, encoder.model_id)
        have: set[str] | dict[str, np.ndarray] = vectors
    else:
        vectors = {}
        have = name_hashes_with_vectors(engine, encoder.model_id)
    missing = [h for h in catalog.embed_texts if h not in have]
    del have
    stats.cached = len(catalog.embed_texts) - len(missing)
    if missing:
        log(f"encoding {len(missing)} catalog names with {encoder.model_id} ({stats.cached} cached)")
    progress = Progress("catalog name embeddings", len(missing), log)
    max_chars = chunk_chars_for(encoder.window_tokens)
    for start in range(0, len(missing), max(1, commit_every)):
        batch = missing[start : start + commit_every]
        encoded = encode_texts(encoder, [catalog.embed_texts[h] for h in batch], max_chars=max_chars,
                               batch_size=batch_size)
        stats.encode_calls += encoded.encode_calls
        new: list[tuple[str, str, np.ndarray]] = []
        for h, vector in zip(batch, encoded.vectors, strict=True):
            if vector is None:
                stats.failed.append(catalog.embed_texts[h])
                continue
            new.append((h, catalog.embed_texts[h], vector))
            if keep_vectors:
                vectors[h] = vector
        save_name_vectors(engine, encoder.model_id, new, now())  # committed: a crash keeps what is done
        stats.new += len(new)
        progress.step(len(batch))
    return vectors, stats


def build_matrix(catalog: StoredCatalog, vectors: dict[str, np.ndarray], model: str) -> CatalogMatrix:
    """One row per profession that has a vector (professions sharing a name share the vector)."""
    ids = [pid for pid, h in catalog.embed_hash_of.items() if h in vectors]
    if not ids:
        raise ValueError(f"no catalog name has a vector for {model}")
    matrix = np.stack([vectors[catalog.embed_hash_of[pid]] for pid in ids]).astype(np.float32)
    return CatalogMatrix(tuple(ids), matrix, model)
