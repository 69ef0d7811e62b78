"""Dagster glue shared by the LLM assets: run config, lane failures, metadata, checks.

The three LLM assets are one multi-asset step (`assets/llm_enrichment.py`); this module holds what
each lane (asset) of it reports.
"""


from collections.abc import Mapping
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.llm_selection import LLM_MAX_ATTEMPTS, SUCCESS_STATUSES, LlmStatus
from ty_pipeline.enrichment.partition_run import LlmPipeline, PartitionRun, RunSettings
from ty_pipeline.partitions import daily_partitions
from ty_pipeline.resources.llm_scope import LlmScopeResource

LLM_ERRORS_CHECK = "no_llm_errors"


class LlmRunConfig(dg.Config):
    """Run settings every LLM lane shares (Launchpad / run config of `llm_enrichment`)."""

    # Tasks (one posting of one asset) in flight; 0 = twice the hosts' total slots. The client holds
    # every call until its host has a free slot, so this only has to keep a call waiting per slot.
    workers: int = 0
    max_attempts: int = LLM_MAX_ATTEMPTS  # runs that may try one input before its llm_error is final
    max_postings: int | None = None  # overrides llm_scope.max_postings (TY_LLM_MAX_POSTINGS) for this run
    num_ctx: int = 8192  # context window sent with every call (the server default depends on VRAM)
    max_description_chars: int = 12000  # longer descriptions are cut so the prompt fits num_ctx
    # Server failures (timeouts, 5xx, 503 busy after the client's retries) charge no posting an attempt;
    # this many in a row stop the run, the postings stay pending.
    abort_after_consecutive_transport_errors: int = 3


def run_settings(config: LlmRunConfig, scope: LlmScopeResource, *, measured_cap: int | None = None) -> RunSettings:
    return RunSettings(
        workers=max(0, config.workers),
        max_attempts=max(1, config.max_attempts),
        max_postings=scope.cap(config.max_postings, measured=measured_cap),
        max_description_chars=config.max_description_chars,
        abort_after_consecutive_transport_errors=config.abort_after_consecutive_transport_errors,
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


def lane_failure(asset: str, day: object, run: PartitionRun) -> tuple[str, bool] | None:
    """Why this lane's run fails, and whether a step retry may help; None when it succeeded."""
    report = run.report
    if report.aborted:
        # Not retried by the step RetryPolicy: the client has already retried with backoff, what was
        # saved stays saved, and the next run (or a re-execution) resumes the pending postings.
        return (f"{asset} {day}: stopped early, {report.aborted}. {report.saved} postings saved; "
                f"{run.pending} left pending for the next run.", False)
    if report.deferred and not report.saved:
        # Retried by the step RetryPolicy: no posting was charged, and the server may be back.
        return (f"{asset} {day}: the LLM server failed on all {len(report.deferred)} postings sent (no attempt "
                f"charged, all left pending); first: {report.server_errors[0]}", True)
    if report.saved and run.failed == report.saved:
        # Not retried: every posting was charged an attempt already, and a retry would spend the rest
        # of their attempts on what is most likely a prompt or model problem.
        return f"{asset} {day}: every one of {run.failed} postings failed; first: {report.failures[0]}", False
    return None


def llm_metadata(
    run: PartitionRun, pipeline: LlmPipeline, sources: list[str], rows: list[dict[str, Any]], config: LlmRunConfig,
    *, workers: int, slots: int,
) -> dict[str, Any]:
    statuses = run.report.statuses
    partition_statuses: dict[str, int] = {}
    for row in rows:
        partition_statuses[row["status"]] = partition_statuses.get(row["status"], 0) + 1
    stats = run.stats.summary()
    return {
        **pass_rates(statuses, partition_statuses),
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
        "cached_prompt_tokens": stats["cached_prompt_tokens"],
        "eval_tokens": stats["eval_tokens"],
        "llm_seconds": stats["llm_seconds"],
        "latency_p50_s": stats["latency_p50_s"],
        "latency_p95_s": stats["latency_p95_s"],
        "calls_by_model": dg.MetadataValue.json(stats["calls_by_model"]),
        "models": ", ".join(pipeline.distinct_models),
        "prompt_versions": ", ".join(pipeline.prompt_versions),
        "prompt_version": pipeline.prompt_version,
        "sources": ", ".join(sources),
        "workers": workers,
        "llm_slots": slots,
        "num_ctx": config.num_ctx,
        "truncated_inputs": run.truncated_inputs,
        "llm_server_version": run.server_version or "not contacted",
        "seconds": round(run.seconds, 2),
        "dagster/row_count": len(rows),
    }


def pass_rates(run_statuses: Mapping[str, int], partition_statuses: Mapping[str, int]) -> dict[str, Any]:
    """Success shares as plain floats, which the UI plots over partitions: of this run's saved results
    (`pass_rate`) and of every saved result of the partition (`partition_pass_rate`, comparable across runs).

    Postings skipped for want of a description were never asked, so they count neither way. A run that
    saved nothing else has no rate: the key is left out rather than plotted as 0 or 1.
    """
    out: dict[str, Any] = {}
    for key, counts in (("pass_rate", run_statuses), ("partition_pass_rate", partition_statuses)):
        total = sum(n for status, n in counts.items() if status != LlmStatus.SKIPPED_NO_DESCRIPTION)
        if total:
            passed = sum(n for status, n in counts.items() if status in SUCCESS_STATUSES)
            out[key] = dg.MetadataValue.float(round(passed / total, 4))
    return out


def check_results(
    asset: str, run: PartitionRun, rows: list[dict[str, Any]], engine: Engine
) -> list[dg.AssetCheckResult]:
    errored = [r for r in rows if r["status"] == LlmStatus.LLM_ERROR]
    error_rows = len(errored)
    passed = run.failed == 0 and run.plan.exhausted == 0
    errors = explained(
        check_name=LLM_ERRORS_CHECK,
        asset_key=asset,
        passed=passed,
        reason=f"{run.failed} postings failed in this run and {run.plan.exhausted} are out of attempts (expected 0); "
        f"{error_rows} postings of the partition hold `llm_error` (retried by its next run until attempts run out)",
        examples=[] if passed else posting_examples(engine, [
            (r["posting_id"], f"attempt {r.get('attempts')}: {r.get('error') or 'no error text'}") for r in errored
        ]),
        total_examples=error_rows,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed_this_run": run.failed,
            "out_of_attempts": run.plan.exhausted,
            "llm_error_rows_in_partition": error_rows,
        },
    )
    return [errors]
