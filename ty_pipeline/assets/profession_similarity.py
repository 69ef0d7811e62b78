"""The `profession_similarity` asset: the nearest professions of each profession."""


import time

import dagster as dg
from pydantic import Field

from ty_pipeline.assets.postings import utcnow
from ty_pipeline.professions.partition_run import CatalogMissing
from ty_pipeline.professions.similarity import DEFAULT_TOP_N, MIN_SCORE, audit_similarity
from ty_pipeline.professions.similarity_build import build_similarity
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.berufenet_store import similarity_rows

SIMILARITY_CHECK = "similarity_consistent"


class SimilarityConfig(dg.Config):
    top_n: int = Field(default=DEFAULT_TOP_N, description="Similar professions kept per profession")
    min_postings: int = Field(
        default=0, description="Only professions with at least this many mapped postings (0: the whole catalog)"
    )
    min_score: float = Field(default=MIN_SCORE, description="Pairs scoring lower are dropped")


@dg.asset(
    group_name="professions",
    kinds={"python", "sql"},
    # TY_EMBED_BACKEND=ollama sends the embeddings to the GPU server: share its pool with the LLM steps.
    pool="ollama",
    deps=["berufenet_catalog"],
    check_specs=[
        dg.AssetCheckSpec(
            SIMILARITY_CHECK,
            asset="profession_similarity",
            description="No self pairs, every id in the current catalog, ranks 1..n per profession with "
            "non-increasing scores, scores within [-1, 1].",
        )
    ],
    description=(
        "Top-N similar professions per profession: 0.4 x KldB proximity (same 5 digits 1.0, same first 3 0.7, "
        "same first 2 0.3) + 0.6 x cosine of the name embeddings, computed block-wise as matrix products."
    ),
)
def profession_similarity(
    context: dg.AssetExecutionContext,
    config: SimilarityConfig,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    ollama: OllamaResource,
) -> dg.MaterializeResult:
    started = time.monotonic()
    try:
        build = build_similarity(
            warehouse.get_engine(), open_encoder=embedder.encoder_opener(ollama), now=utcnow, top_n=config.top_n,
            min_postings=config.min_postings, min_score=config.min_score, log=context.log.info,
        )
    except CatalogMissing as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    audit = audit_similarity(*similarity_rows(warehouse.get_engine()))
    check = dg.AssetCheckResult(
        check_name=SIMILARITY_CHECK,
        passed=audit.passed,
        metadata={
            "rows": audit.rows, "professions": audit.professions, "self_pairs": audit.self_pairs,
            "unknown_ids": audit.unknown_ids, "rank_gaps": audit.rank_gaps, "out_of_order": audit.out_of_order,
            "out_of_range": audit.out_of_range, "examples": dg.MetadataValue.json(audit.examples),
        },
    )
    return dg.MaterializeResult(
        check_results=[check],
        metadata={
            "professions": build.professions,
            "with_name_vector": build.with_vector,
            "pairs": build.pairs,
            "new_vectors": build.new_vectors,
            "embedding_model": build.model,
            "seconds": round(time.monotonic() - started, 2),
        }
    )
