"""Per-partition checks on what the LLM assets saved: degenerate, duplicated, inconsistent or incomplete.

The summary check is blocking: a degenerate summary would otherwise become the embedding text of its
posting (`posting_embeddings` prefers the summary), poisoning similarity search downstream.
"""

from collections.abc import Callable
from datetime import date

import dagster as dg
from sqlalchemy import Engine

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.output_audit import Audit, audit_ihl, audit_skill_lists, audit_summaries
from ty_pipeline.enrichment.completeness import Completeness, completeness
from ty_pipeline.partitions import daily_partitions
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.llm_output_queries import saved_ihl_scores, saved_skill_lists, saved_summaries
from ty_pipeline.warehouse.llm_results_store import RESULT_TABLES, load_candidates

COMPLETE_CHECKS = {
    "posting_summaries": "summaries_complete",
    "skill_keywords": "skill_keywords_complete",
    "ihl_scores": "ihl_scores_complete",
}


def _result(audit: Audit, engine: Engine, what: str, day: date) -> dg.AssetCheckResult:
    meta = audit.metadata()
    codes: dict[int, list[str]] = {}
    for code, ids in sorted(audit.offending.items()):
        for posting_id in ids:
            codes.setdefault(posting_id, []).append(code)
    problems = ", ".join(f"{code} {n}" for code, n in meta["problems"].items())
    return explained(
        passed=audit.passed,
        reason=f"{audit.offending_postings} of {audit.checked} saved {what} of {day} are flagged (expected 0): "
        f"{problems}",
        examples=posting_examples(engine, [(pid, ", ".join(c)) for pid, c in sorted(codes.items())]),
        total_examples=audit.offending_postings,
        metadata={
            "checked": audit.checked,
            "offending_postings": audit.offending_postings,
            "problems": dg.MetadataValue.json(meta["problems"]),
            "example_posting_ids": dg.MetadataValue.json(meta["examples"]),
            "notes": dg.MetadataValue.json(meta["notes"]),
        },
    )


def _check(asset: str, name: str, description: str, blocking: bool, what: str,
           run: Callable[[WarehouseResource, date], Audit]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset, name=name, description=description, blocking=blocking,
                    partitions_def=daily_partitions)
    def _fn(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        day = date.fromisoformat(context.partition_key)
        return _result(run(warehouse, day), warehouse.get_engine(), what, day)

    return _fn


def _completeness_result(result: Completeness, engine: Engine, day: date) -> dg.AssetCheckResult:
    return explained(
        passed=result.passed,
        reason=f"{result.done} of {result.in_scope} in-scope postings of {day} have a saved result "
        f"({result.share:.0%}), below the threshold of {result.threshold:.0%}: {result.pending} pending (left by "
        f"the per-run cap or not run yet), {result.failed} failed",
        examples=posting_examples(engine, result.offenders) if not result.passed else [],
        total_examples=result.pending + result.failed,
        severity=dg.AssetCheckSeverity.WARN,  # incomplete is a backlog to work off, not wrong data
        description=(
            f"{result.done} of {result.in_scope} in-scope postings have a saved result "
            f"({result.share:.0%}; threshold {result.threshold:.0%})"
        ),
        metadata={
            "in_scope": result.in_scope,
            "done": result.done,
            "share": round(result.share, 4),
            "threshold": result.threshold,
            "by_status": dg.MetadataValue.json(result.by_status),
            "pending_examples": dg.MetadataValue.json(result.pending_examples),
            "failed_examples": dg.MetadataValue.json(result.failed_examples),
        },
    )


def _completeness_check(asset: str, name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset, name=name, partitions_def=daily_partitions,
        description=(
            "Share of the partition's in-scope postings (sources of `llm_scope`, valid, with a description) "
            "that have a saved result, against `llm_scope.min_complete_share` (TY_LLM_MIN_COMPLETE). Postings "
            "left pending by the per-run cap or failed by the model are named."
        ),
    )
    def _fn(
        context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, llm_scope: LlmScopeResource
    ) -> dg.AssetCheckResult:
        day = date.fromisoformat(context.partition_key)
        engine = warehouse.get_engine()
        candidates = load_candidates(engine, RESULT_TABLES[asset], day, llm_scope.source_list())
        return _completeness_result(completeness(candidates, llm_scope.completeness_threshold()), engine, day)

    return _fn


def build_llm_output_checks() -> list[dg.AssetChecksDefinition]:
    """Checks for the three LLM assets; add them to the definitions together with those assets."""
    return [*(_completeness_check(asset, name) for asset, name in COMPLETE_CHECKS.items()),
        _check(
            "posting_summaries", "no_degenerate_summaries",
            "No saved summary loops, leaks template variables, refuses, says 'not specified', has an odd "
            "length, or is the same text as another posting's.",
            True, "summaries",
            lambda wh, day: audit_summaries(saved_summaries(wh.get_engine(), day)),
        ),
        _check(
            "skill_keywords", "skill_lists_well_formed",
            "Every saved skill list is a non-empty JSON array of distinct, sane skill names.",
            False, "skill lists",
            lambda wh, day: audit_skill_lists(saved_skill_lists(wh.get_engine(), day)),
        ),
        _check(
            "ihl_scores", "ihl_scores_consistent",
            "Scores are integers 0-10, categories follow the contract's rule, and a large partition does "
            "not get one score for every posting.",
            False, "IHL scores",
            lambda wh, day: audit_ihl(saved_ihl_scores(wh.get_engine(), day)),
        ),
    ]
