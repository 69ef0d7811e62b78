"""Profession similarity: KldB proximity combined with name-embedding cosine, top-N per profession.

Upstream (docs/domain_rules.md §8.2): KldB score 1.0 for the same five digits, 0.7 for the same first three,
0.3 for the same first two, else 0; combined = 0.4 * kldb + 0.6 * cosine where a name embedding exists
(else the KldB score alone); pairs under 0.15 are dropped; top-N per profession. Here the whole thing
is block-wise matrix arithmetic, so all 20,000 KldB entries take seconds, not a pairwise Python loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

KLDB_WEIGHT = 0.4
COSINE_WEIGHT = 0.6
MIN_SCORE = 0.15
DEFAULT_TOP_N = 10
# Cells (rows x professions) of one block. A block holds about ten temporaries of that shape (KldB
# scores, cosines, the combined score and its negation in float64, argpartition's int64 indices,
# masks): ~46 bytes a cell at its peak, so 2M cells stay near 100 MB whatever the catalog size. A fixed
# 1,024 rows against the full KldB catalog (23,000 professions) took 1.1 GB on top of the loaded encoder
# (1.8 GiB RSS in bench/bench_scale.py).
MAX_BLOCK_CELLS = 1 << 21


@dataclass(frozen=True, slots=True)
class SimilarPair:
    profession_id: str
    similar_id: str
    rank: int
    score: float
    kldb_score: float
    cosine: float | None


def kldb_proximity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) scores for five-digit KldB codes given as integers."""
    a5, b5 = a[:, None], b[None, :]
    same5 = a5 == b5
    same3 = (a5 // 100) == (b5 // 100)
    same2 = (a5 // 1000) == (b5 // 1000)
    return np.where(same5, 1.0, np.where(same3, 0.7, np.where(same2, 0.3, 0.0)))


def similar_professions(
    ids: Sequence[str],
    kldb_codes: Sequence[str],
    vectors: np.ndarray,
    has_vector: np.ndarray,
    *,
    top_n: int = DEFAULT_TOP_N,
    min_score: float = MIN_SCORE,
    block: int = 1024,
    max_block_cells: int = MAX_BLOCK_CELLS,
) -> list[SimilarPair]:
    """Top-N most similar other professions per profession.

    `vectors` (N, d) are unit-length name vectors; rows with `has_vector` False are ignored for the
    cosine and those pairs are scored by KldB proximity alone. Rows are scored `block` at a time, fewer
    when a block would exceed `max_block_cells` (the memory of a block grows with the catalog).
    """
    n = len(ids)
    if n < 2 or top_n <= 0:
        return []
    block = max(1, min(block, max_block_cells // n))
    codes = np.array([int(c) for c in kldb_codes], dtype=np.int64)
    vecs = np.where(has_vector[:, None], vectors, 0.0).astype(np.float32)
    out: list[SimilarPair] = []
    k = min(top_n, n - 1)
    for start in range(0, n, block):
        stop = min(n, start + block)
        kldb = kldb_proximity(codes[start:stop], codes)
        cosine = vecs[start:stop] @ vecs.T
        both = has_vector[start:stop, None] & has_vector[None, :]
        combined = np.where(both, KLDB_WEIGHT * kldb + COSINE_WEIGHT * cosine, kldb)
        rows = np.arange(stop - start)
        combined[rows, rows + start] = -np.inf  # never similar to itself
        part = np.argpartition(-combined, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(combined, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        best = np.take_along_axis(part, order, axis=1)
        for r in range(stop - start):
            kept = [j for j in best[r] if float(combined[r, j]) >= min_score]  # sorted, so a prefix
            for rank, j in enumerate(kept, start=1):
                out.append(SimilarPair(
                    ids[start + r], ids[j], rank, round(float(combined[r, j]), 6), float(kldb[r, j]),
                    round(float(cosine[r, j]), 6) if both[r, j] else None,
                ))
    return out


@dataclass
class SimilarityAudit:
    """What the `similarity_consistent` check found in the stored table (all counts expected 0)."""

    rows: int = 0
    professions: int = 0
    self_pairs: int = 0
    unknown_ids: int = 0  # a profession or neighbour no longer in the catalog (catalog rebuilt since)
    rank_gaps: int = 0  # professions whose ranks are not 1..n
    out_of_order: int = 0  # professions whose scores rise with the rank
    out_of_range: int = 0  # scores outside [-1, 1]
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.self_pairs or self.unknown_ids or self.rank_gaps or self.out_of_order or self.out_of_range)


def audit_similarity(rows: Iterable[tuple[str, str, int, float]], catalog_ids: set[str]) -> SimilarityAudit:
    """`rows`: (profession_id, similar_id, rank, score) as stored."""
    audit = SimilarityAudit()
    by_profession: dict[str, list[tuple[int, float]]] = {}
    flagged: set[str] = set()
    for profession_id, similar_id, rank, score in rows:
        audit.rows += 1
        by_profession.setdefault(profession_id, []).append((rank, score))
        problem = None
        if profession_id == similar_id:
            audit.self_pairs += 1
            problem = "self pair"
        if profession_id not in catalog_ids or similar_id not in catalog_ids:
            audit.unknown_ids += 1
            problem = "not in the catalog"
        if not -1.0 - 1e-6 <= score <= 1.0 + 1e-6:
            audit.out_of_range += 1
            problem = f"score {score:.3f}"
        if problem and profession_id not in flagged and len(audit.examples) < 5:
            flagged.add(profession_id)
            audit.examples.append(f"{profession_id} -> {similar_id}: {problem}")
    audit.professions = len(by_profession)
    for profession_id, ranked in by_profession.items():
        ranked.sort()
        if [r for r, _ in ranked] != list(range(1, len(ranked) + 1)):
            audit.rank_gaps += 1
            if len(audit.examples) < 5:
                audit.examples.append(f"{profession_id}: ranks {[r for r, _ in ranked]}")
        if any(later > earlier + 1e-9 for (_, earlier), (_, later) in zip(ranked, ranked[1:], strict=False)):
            audit.out_of_order += 1
            if len(audit.examples) < 5:
                audit.examples.append(f"{profession_id}: scores rise with the rank")
    return audit
