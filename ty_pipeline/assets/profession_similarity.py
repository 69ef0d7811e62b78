"""The `profession_similarity` asset: the nearest professions of each profession."""


import time

import dagster as dg
from pydantic import Field

from ty_pipeline.assets.check_report import explained
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.pool_names import OLLAMA_POOL
from ty_pipeline.professions.partition_run import CatalogMissing
from ty_pipeline.professions.similarity import DEFAULT_TOP_N, MIN_SCORE, SimilarityAudit, audit_similarity
from ty_pipeline.professions.similarity_build import build_similarity
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.berufenet_store import catalog_names, similarity_rows

SIMILARITY_CHECK = "similarity_consistent"

# Rebuilt after every new `berufenet_catalog` (the scores compare catalog names; a stale table names
# professions that are gone): `eager` waits while the catalog is missing or building and requests nothing
# else. `eager` alone never builds a table that is already missing when the condition is first evaluated
# (it reacts to changes only), e.g. a warehouse whose catalog was built before this condition existed: the
# second branch builds it then, once. Evaluated by `default_automation_condition_sensor`.
SIMILARITY_AUTOMATION = (
    dg.AutomationCondition.eager()
    | (
        dg.AutomationCondition.initial_evaluation()
        & dg.AutomationCondition.missing()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.in_progress()
    )
).with_label("after each catalog build")


class SimilarityConfig(dg.Config):
    top_n: int = Field(default=DEFAULT_TOP_N, description="Similar professions kept per profession")
    min_postings: int = Field(
        default=0, description="Only professions with at least this many mapped postings (0: the whole catalog)"
    )
    min_score: float = Field(default=MIN_SCORE, description="Pairs scoring lower are dropped")


@retried_asset(
    group_name="professions",
    kinds={"python", "sql"},
    # TY_EMBED_BACKEND=ollama sends the embeddings to the GPU server: share its pool with the LLM steps.
    pool=OLLAMA_POOL,
    deps=["berufenet_catalog"],
    automation_condition=SIMILARITY_AUTOMATION,
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
    engine = warehouse.get_engine()
    audit = audit_similarity(*similarity_rows(engine))
    check = similarity_check(audit, catalog_names(engine, _profession_ids(audit.examples)) if not audit.passed else {})
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


def _profession_ids(examples: list[str]) -> list[str]:
    return [example.split(" ", 1)[0].rstrip(":") for example in examples]


def similarity_check(audit: SimilarityAudit, names: dict[str, str]) -> dg.AssetCheckResult:
    """The audit as a check result; `names` (profession id -> catalog name) labels the examples."""
    rows = []
    for example in audit.examples:  # "<id> -> <similar>: problem" or "<id>: problem"
        where, _, problem = example.partition(": ")
        profession_id = where.split(" ", 1)[0]
        rows.append({"profession_id": profession_id, "name": names.get(profession_id, "(not in the catalog)"),
                     "pair": where, "problem": problem})
    counts = {"self pairs": audit.self_pairs, "ids not in the catalog": audit.unknown_ids,
              "professions with rank gaps": audit.rank_gaps, "professions with rising scores": audit.out_of_order,
              "scores outside [-1, 1]": audit.out_of_range}
    return explained(
        check_name=SIMILARITY_CHECK,
        passed=audit.passed,
        metadata={
            "rows": audit.rows, "professions": audit.professions, "self_pairs": audit.self_pairs,
            "unknown_ids": audit.unknown_ids, "rank_gaps": audit.rank_gaps, "out_of_order": audit.out_of_order,
            "out_of_range": audit.out_of_range,
        },
        reason=f"the stored similarity table ({audit.rows} rows) is inconsistent (expected 0 of each): "
        + ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        + "; materialize `profession_similarity` again (after a catalog rebuild it is stale)",
        examples=rows,
    )
