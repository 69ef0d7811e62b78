"""Dagster glue shared by the three LLM assets: run config, preflight failures, metadata, checks."""


from collections.abc import Callable
from typing import Any

import dagster as dg
from sqlalchemy import Table

from ty_pipeline.clients.ollama import OllamaError, OllamaModelMissing, OllamaUnavailable
from ty_pipeline.domain.llm_selection import LlmStatus
from ty_pipeline.enrichment.partition_run import LlmPipeline, PartitionRun, RunSettings, enrich_partition
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.llm_results_store import saved_rows

LLM_ERRORS_CHECK = "no_llm_errors"


class LlmRunConfig(dg.Config):
    """Run settings every LLM asset shares (Launchpad / run config)."""

    workers: int = 2  # postings in flight; keep workers x calls per step <= OLLAMA_NUM_PARALLEL (see README)
    max_attempts: int = 3  # runs that may try one input before its llm_error is final
    max_postings: int | None = None  # overrides llm_scope.max_postings (TY_LLM_MAX_POSTINGS) for this run
    num_ctx: int = 8192  # context window sent with every call (the server default depends on VRAM)
    num_predict: int = 1024  # output token cap; an answer cut here gets one corrective retry
    max_description_chars: int = 12000  # longer descriptions are cut so the prompt fits num_ctx
    # Server failures (timeouts, 5xx, 503 busy after the client's retries) charge no posting an attempt;
    # this many in a row stop the run, the postings stay pending.
    abort_after_consecutive_transport_errors: int = 3


def run_settings(config: LlmRunConfig, scope: LlmScopeResource) -> RunSettings:
    return RunSettings(
        workers=max(1, config.workers),
        max_attempts=max(1, config.max_attempts),
        max_postings=scope.cap(config.max_postings),
        max_description_chars=config.max_description_chars,
        abort_after_consecutive_transport_errors=config.abort_after_consecutive_transport_errors,
    )


def llm_asset(name: str, description: str) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """The decorator every LLM asset shares: daily, group `llm`, the `ollama` pool, after descriptions,
    and the step retry policy (transient failures only)."""
    return retried_asset(
        name=name,
        partitions_def=daily_partitions,
        group_name="llm",
        kinds={"python", "sql", "ollama"},
        pool="ollama",  # one LLM asset talks to the GPU at a time, across runs (dagster.yaml)
        deps=["job_descriptions"],
        check_specs=check_specs(name),
        description=description,
    )


def check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    """The in-asset check: what this run failed to compute. Audits of the saved outputs (degenerate,
    duplicated, inconsistent, incomplete) are standalone checks in `checks/llm_outputs.py`, re-runnable
    from the UI without calling the model again."""
    return [
        dg.AssetCheckSpec(
            LLM_ERRORS_CHECK,
            asset=asset,
            partitions_def=daily_partitions,
            description="No posting of this run ended in llm_error, and none of the partition is out of "
            "attempts (warning: failures are retried on later runs up to max_attempts).",
        ),
    ]


def materialize_llm_asset(
    context: dg.AssetExecutionContext,
    *,
    asset: str,
    table: Table,
    build_pipeline: Callable[[Any], LlmPipeline],
    config: LlmRunConfig,
    warehouse: WarehouseResource,
    ollama: OllamaResource,
    llm_scope: LlmScopeResource,
    extra_metadata: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    day = partition_date(context)
    try:
        sources = llm_scope.source_list()
    except ValueError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    engine = warehouse.get_engine()
    client = ollama.get_client()  # one pooled client, shared by the preflight and every worker
    pipeline = build_pipeline(client)
    try:
        run = enrich_partition(
            engine=engine, table=table, day=day, sources=sources, pipeline=pipeline, client=client,
            settings=run_settings(config, llm_scope), log=context.log.info, what=asset,
        )
    except (OllamaUnavailable, OllamaModelMissing) as exc:
        # Before any posting: nothing was written, and retrying the step cannot install a model.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except OllamaError as exc:  # the preflight met a busy or failing server
        raise dg.Failure(description=f"Ollama preflight failed: {exc}") from exc
    finally:
        client.close()

    rows = saved_rows(engine, table, day)
    metadata = llm_metadata(run, pipeline, sources, rows, config)
    metadata.update(extra_metadata or {})
    for message in run.report.failures[:10]:
        context.log.warning(message)
    for message in run.report.server_errors[:10]:
        context.log.warning(f"server failure, posting left pending (no attempt charged): {message}")
    if run.report.aborted:
        # Not retried by the step RetryPolicy: the Ollama client has already retried with backoff, what
        # was saved stays saved, and the next run (or a re-execution) resumes the pending postings.
        raise dg.Failure(
            description=f"{asset} {day}: stopped early, {run.report.aborted}. {run.report.saved} postings saved; "
            f"{run.pending} left pending for the next run.",
            metadata=metadata,
            allow_retries=False,
        )
    if run.report.deferred and not run.report.saved:
        # Retried by the step RetryPolicy: no posting was charged, and the server may be back.
        raise dg.Failure(
            description=f"{asset} {day}: the Ollama server failed on all {len(run.report.deferred)} postings sent "
            f"(no attempt charged, all left pending); first: {run.report.server_errors[0]}",
            metadata=metadata,
        )
    if run.report.saved and run.failed == run.report.saved:
        # Not retried by the step RetryPolicy: every posting was charged an attempt already, and a retry
        # would spend the rest of their attempts on what is most likely a prompt or model problem.
        raise dg.Failure(
            description=f"{asset} {day}: every one of {run.failed} postings failed; first: {run.report.failures[0]}",
            metadata=metadata,
            allow_retries=False,
        )
    context.log.info(
        f"{asset} {day}: {run.report.saved} computed ({dict(run.report.statuses)}), {run.plan.cached} cached, "
        f"{len(run.plan.skipped)} without description, {run.pending} pending; {run.stats.calls} LLM calls"
    )
    return dg.MaterializeResult(
        metadata=metadata, check_results=check_results(asset, run, rows)
    )


def llm_metadata(
    run: PartitionRun, pipeline: LlmPipeline, sources: list[str], rows: list[dict[str, Any]], config: LlmRunConfig
) -> dict[str, Any]:
    statuses = run.report.statuses
    partition_statuses: dict[str, int] = {}
    for row in rows:
        partition_statuses[row["status"]] = partition_statuses.get(row["status"], 0) + 1
    stats = run.stats.summary()
    return {
        "processed": run.report.saved,
        "cached": run.plan.cached,
        "failed": run.failed,
        "pending": run.pending,
        "server_errors": len(run.report.deferred),
        "skipped_no_description": len(run.plan.skipped),
        "retried": run.plan.retries,
        "out_of_attempts": run.plan.exhausted,
        "status_counts": dg.MetadataValue.json(dict(sorted(statuses.items()))),
        "partition_status_counts": dg.MetadataValue.json(dict(sorted(partition_statuses.items()))),
        "llm_calls": stats["llm_calls"],
        "llm_http_attempts": stats["llm_http_attempts"],
        "prompt_tokens": stats["prompt_tokens"],
        "eval_tokens": stats["eval_tokens"],
        "cached_prompt_tokens": stats["cached_prompt_tokens"],
        "llm_seconds": stats["llm_seconds"],
        "latency_p50_s": stats["latency_p50_s"],
        "latency_p95_s": stats["latency_p95_s"],
        "calls_by_model": dg.MetadataValue.json(stats["calls_by_model"]),
        "models": ", ".join(pipeline.distinct_models),
        "prompt_versions": ", ".join(pipeline.prompt_versions),
        "prompt_version": pipeline.prompt_version,
        "sources": ", ".join(sources),
        "workers": config.workers,
        "num_ctx": config.num_ctx,
        "truncated_inputs": run.truncated_inputs,
        "ollama_version": run.server_version or "not contacted",
        "seconds": round(run.seconds, 2),
        "dagster/row_count": len(rows),
    }


def check_results(asset: str, run: PartitionRun, rows: list[dict[str, Any]]) -> list[dg.AssetCheckResult]:
    error_rows = sum(1 for r in rows if r["status"] == LlmStatus.LLM_ERROR)
    errors = dg.AssetCheckResult(
        check_name=LLM_ERRORS_CHECK,
        asset_key=asset,
        passed=run.failed == 0 and run.plan.exhausted == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed_this_run": run.failed,
            "out_of_attempts": run.plan.exhausted,
            "llm_error_rows_in_partition": error_rows,
            "examples": dg.MetadataValue.md("\n".join(f"- {f}" for f in run.report.failures[:5]) or "none"),
        },
    )
    return [errors]
