"""Vector arithmetic of the embeddings: pooling chunk vectors, unit length, what is worth storing.

Apart from embedding_text.py (the texts) so that what only needs the texts, such as `ty-pipeline status`
counting what is left to embed, does not import numpy (~70 ms of a cold start).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pool_chunks(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Length-weighted mean of L2-normalised chunk vectors, re-normalised to unit length.

    Weighting by chunk length makes a text's vector independent of where the cuts fall.
    """
    if len(vectors) == 0:
        raise ValueError("no chunk vectors to pool")
    w = np.asarray(weights, dtype=np.float64).reshape(-1, 1)
    mean = (vectors.astype(np.float64) * w).sum(axis=0) / w.sum()
    pooled: np.ndarray = l2_normalize(mean.reshape(1, -1))[0]
    return pooled


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32. Zero rows stay zero (callers treat them as failures)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    safe = np.where(norms > 0, norms, 1.0)
    return (vectors / safe).astype(np.float32)


def usable_vector(vector: np.ndarray) -> bool:
    """A vector worth storing: finite and of unit length (bge-m3 once returned NaN, docs/domain_rules.md §7)."""
    return bool(np.all(np.isfinite(vector))) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
