"""The `profession_similarity` asset: the nearest professions of each profession."""


import time

import dagster as dg
from pydantic import Field

from ty_pipeline.assets.postings import utcnow
from ty_pipeline.professions.partition_run import CatalogMissing
from ty_pipeline.professions.similarity import DEFAULT_TOP_N, MIN_SCORE
from ty_pipeline.professions.similarity_build import build_similarity
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.warehouse import WarehouseResource


class SimilarityConfig(dg.Config):
    top_n: int = Field(default=DEFAULT_TOP_N, description="Similar professions kept per profession")
    min_postings: int = Field(
        default=0, description="Only professions with at least this many mapped postings (0: the whole catalog)"
    )
    min_score: float = Field(default=MIN_SCORE, description="Pairs scoring lower are dropped")


@dg.asset(
    group_name="professions",
    kinds={"python", "sql"},
    deps=["berufenet_catalog"],
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
) -> dg.MaterializeResult:
    started = time.monotonic()
    try:
        build = build_similarity(
            warehouse.get_engine(), open_encoder=embedder.open_encoder, now=utcnow, top_n=config.top_n,
            min_postings=config.min_postings, min_score=config.min_score, log=context.log.info,
        )
    except CatalogMissing as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    return dg.MaterializeResult(
        metadata={
            "professions": build.professions,
            "with_name_vector": build.with_vector,
            "pairs": build.pairs,
            "new_vectors": build.new_vectors,
            "embedding_model": build.model,
            "seconds": round(time.monotonic() - started, 2),
        }
    )
