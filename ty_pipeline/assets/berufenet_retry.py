"""`berufenet_title_retry`: one dynamic partition per failed title, re-classified with description context.

Select failed titles in the UI (or `dagster asset backfill`) and launch: each partition asks the LLM to
choose among the title's top-k candidates given the start of a posting description. Success updates every
posting with that title (in any daily partition) and the learned alias store; a rejection raises, so the
partition stays failed and its reason is the run's error.
"""


from typing import Any

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ty_pipeline.assets.check_report import explained
from ty_pipeline.clients.llm_hosts import LlmClient
from ty_pipeline.clients.ollama import OllamaError
from ty_pipeline.domain.berufenet_status import UNRESOLVED
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.failed_titles import PARTITIONS_NAME
from ty_pipeline.domain.pool_names import OLLAMA_POOL
from ty_pipeline.professions.llm import DEFAULT_BERUFENET_MODEL, DESCRIPTION_CHARS, LlmChooser
from ty_pipeline.professions.partition_run import CatalogMissing
from ty_pipeline.professions.retry import RetryRejected, UnknownFailedTitle, retry_title
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.berufenet_store import failed_title, postings_with_title

failed_titles_partitions = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)
RETRY_CHECK = "every_posting_with_title_resolved"


class TitleRetryConfig(dg.Config):
    llm_model: str = Field(default=DEFAULT_BERUFENET_MODEL, description="Ollama model that chooses")
    top_k: int = Field(default=5, description="Candidates offered (the title's stored top-k)")
    context_chars: int = Field(default=DESCRIPTION_CHARS, description="Description characters shown, cut at a word")


@retried_asset(
    partitions_def=failed_titles_partitions,
    group_name="professions",
    kinds={"python", "sql"},
    pool=OLLAMA_POOL,
    deps=["berufenet_catalog"],
    check_specs=[
        dg.AssetCheckSpec(
            RETRY_CHECK,
            asset="berufenet_title_retry",
            partitions_def=failed_titles_partitions,
            description="After a successful retry no posting with the title (in any daily partition) is left "
            "with an unresolved status.",
        )
    ],
    description=(
        "Failed Berufenet titles (recorded by `berufenet_mappings`, registered as partitions by "
        "`berufenet_failed_titles_sensor`), re-classified by the LLM with description context. Success maps "
        "every posting with the title; a rejection fails the partition with the reason."
    ),
)
def berufenet_title_retry(
    context: dg.AssetExecutionContext,
    config: TitleRetryConfig,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    ollama: OllamaResource,
) -> dg.MaterializeResult:
    engine = warehouse.get_engine()
    clients: list[LlmClient] = []

    def chooser() -> LlmChooser:
        client = ollama.get_client()
        clients.append(client)
        client.preflight([config.llm_model])
        return LlmChooser(client, config.llm_model)

    try:
        outcome = retry_title(
            engine, context.partition_key, chooser=chooser, open_encoder=embedder.encoder_opener(ollama), now=utcnow,
            top_k=config.top_k, context_chars=config.context_chars, log=context.log.info,
        )
    except (RetryRejected, UnknownFailedTitle, CatalogMissing) as exc:
        raise dg.Failure(description=str(exc), metadata=failure_metadata(engine, context.partition_key, str(exc)),
                         allow_retries=False) from exc
    except OllamaError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise dg.Failure(description=reason, metadata=failure_metadata(engine, context.partition_key, reason)) from exc
    finally:
        for client in clients:
            client.close()

    prof = outcome.profession
    assert prof is not None
    context.log.info(
        f"'{outcome.title}' -> {prof.name} ({prof.profession_id}, KldB {prof.kldb}); "
        f"{outcome.postings_updated} postings updated"
    )
    metrics = outcome.llm_metrics
    by_status = postings_with_title(engine, outcome.title_key)
    left = {status: n for status, n in by_status.items() if status in {str(s) for s in UNRESOLVED}}
    check = retry_check(context.partition_key, outcome.title, by_status, left)
    return dg.MaterializeResult(
        check_results=[check],
        metadata={
            "title": outcome.title,
            "outcome": outcome.status,
            "berufenet_id": prof.profession_id,
            "berufenet_name": prof.name,
            "kldb": prof.kldb,
            "qualification_level": prof.qualification_level,
            "postings_updated": outcome.postings_updated,
            "candidates": len(outcome.candidates),
            "description_chars": outcome.description_chars,
            "llm_calls": len(metrics),
            "llm_output_tokens": sum(m.eval_count for m in metrics),
        }
    )


def failure_metadata(engine: Engine, partition_key: str, reason: str) -> dict[str, Any]:
    """What the UI shows on the failed step and run (Dagster puts a Failure's metadata there): the reason and
    which title it was, so nobody has to open the run log."""
    meta: dict[str, Any] = {"reason": reason, "partition_key": partition_key}
    row = failed_title(engine, partition_key)
    if row is not None:
        meta.update({"title": row.title, "status": row.status, "postings": row.posting_count})
    return meta


def retry_check(partition_key: str, title: str, by_status: dict[str, int], left: dict[str, int]) -> dg.AssetCheckResult:
    """After a successful retry no posting with the title may stay unresolved; the leftovers per status."""
    return explained(
        check_name=RETRY_CHECK,
        passed=not left,
        metadata={"postings_by_status": dg.MetadataValue.json(by_status), "unresolved": sum(left.values())},
        reason=f"{sum(left.values())} postings with the title '{title}' are still unresolved after the retry "
        "(expected 0): materialize this partition again",
        examples=[{"partition_key": partition_key, "title": title, "status": status, "postings": n}
                  for status, n in sorted(left.items())],
    )
