"""The `berufenet_mappings` asset: each posting's title mapped to a profession (KldB code, level)."""


import time
from typing import Any

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.berufenet_status import BerufenetStatus
from ty_pipeline.domain.check_report import MAX_EXAMPLES, examples_table
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.failed_titles import OPEN_TITLES_SHOWN, open_titles_rows
from ty_pipeline.domain.pool_names import OLLAMA_POOL
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.professions.llm import DEFAULT_BERUFENET_MODEL
from ty_pipeline.professions.partition_run import CatalogMissing, DayMapping, DaySettings, map_day
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.berufenet_store import open_failed_titles

MAPPED_CHECK = "every_posting_mapped"
VERIFIED_CHECK = "uncertain_band_verified"


class BerufenetMappingConfig(dg.Config):
    accept_threshold: float | None = Field(
        default=None, description="Top-1 cosine accepted without the LLM; unset: calibrated for the embedding model"
    )
    verify_threshold: float | None = Field(
        default=None, description="Below this top-1 cosine a title is no_match; unset: calibrated for the model"
    )
    top_k: int = Field(default=5, description="Candidates kept per title (shown to the LLM)")
    llm_verify: bool = Field(default=True, description="Let the LLM verify the uncertain band")
    llm_model: str = Field(default=DEFAULT_BERUFENET_MODEL, description="Ollama model; empty: no LLM configured")
    llm_workers: int = Field(default=2, description="Parallel LLM calls (size to OLLAMA_NUM_PARALLEL)")
    encode_batch: int = Field(default=256, description="Titles per encoder call and matrix product")
    reprocess: bool = Field(default=False, description="Map every posting again, not only new or retryable ones")


def configured_model_id(embedder: EmbedderResource, ollama: OllamaResource | None = None) -> str:
    """The encoder's `model_id` as configured, known before the (slow) model load."""
    return embedder.configured_model_id(ollama)


@retried_asset(
    partitions_def=daily_partitions,
    group_name="professions",
    kinds={"python", "sql"},
    pool=OLLAMA_POOL,
    deps=["postings", "berufenet_catalog"],
    check_specs=[
        dg.AssetCheckSpec(
            MAPPED_CHECK,
            asset="berufenet_mappings",
            partitions_def=daily_partitions,
            description="Every valid posting of the partition has a mapping row (resolved or with its reason).",
        ),
        dg.AssetCheckSpec(
            VERIFIED_CHECK,
            asset="berufenet_mappings",
            partitions_def=daily_partitions,
            description=(
                "No title of the uncertain band was left unverified because Ollama was unavailable or failed "
                "(those titles are retried by the next run)."
            ),
        ),
    ],
    description=(
        "Posting title -> profession, on distinct cleaned titles, cheapest stage first: the Jobsuche `beruf` "
        "label, exact and alias lookup (three-tier), titles learned earlier, embedding top-k against the "
        "catalog (one matrix product per batch), and an LLM check of the uncertain band only. Unresolved "
        "titles are recorded for the `berufenet_title_retry` backfill."
    ),
)
def berufenet_mappings(
    context: dg.AssetExecutionContext,
    config: BerufenetMappingConfig,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    ollama: OllamaResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    started = time.monotonic()
    engine = warehouse.get_engine()
    try:
        mapped = map_day(
            engine, day,
            DaySettings(accept_threshold=config.accept_threshold, verify_threshold=config.verify_threshold,
                        top_k=config.top_k, llm_verify=config.llm_verify, llm_model=config.llm_model,
                        llm_workers=config.llm_workers, encode_batch=config.encode_batch, reprocess=config.reprocess),
            embed_model_id=configured_model_id(embedder, ollama),
            open_encoder=embedder.encoder_opener(ollama), open_llm_client=ollama.get_client, now=utcnow,
            log=context.log.info, warn=context.log.warning,
        )
    except CatalogMissing as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    run, report = mapped.run, mapped.run.report
    if report.llm_problem:
        context.log.error(f"uncertain band not verified: {report.llm_problem}")
    for r in [r for r in report.results if r.status == BerufenetStatus.ERROR][:10]:
        context.log.warning(f"title '{r.group.title}': {r.error}")
    metadata = mapping_metadata(mapped, config.llm_model if config.llm_verify else "", time.monotonic() - started)
    metadata.update(open_titles_metadata(engine))
    if report.llm_problem:
        metadata["llm_problem"] = report.llm_problem
    context.log.info(
        f"{day}: {run.processed} postings / {run.titles} titles mapped, {mapped.resolved_postings} postings "
        f"resolved; titles by status {dict(mapped.titles_by_status)}"
    )
    return dg.MaterializeResult(metadata=metadata, check_results=mapping_checks(engine, mapped))


def mapping_metadata(mapped: DayMapping, llm_model: str, seconds: float) -> dict[str, Any]:
    """The run's figures and the partition's coverage; `llm_model` is the verifying model, empty when off."""
    run, report = mapped.run, mapped.run.report
    titles = mapped.titles_by_status
    metrics = report.llm_metrics
    metadata: dict[str, dg.RawMetadataValue] = {
        "postings": run.postings,
        "processed": run.processed,
        "up_to_date": run.up_to_date,
        "distinct_titles": run.titles,
        "resolved_postings": mapped.resolved_postings,
        "resolved_share": round(mapped.resolved_postings / run.processed, 4) if run.processed else 1.0,
        "learned_new": run.learned,
        "failed_titles": run.failed_titles,
        "titles_by_status": dg.MetadataValue.json(dict(sorted(titles.items()))),
        "postings_by_status": dg.MetadataValue.json(dict(sorted(mapped.postings_by_status.items()))),
        "catalog_entries": run.catalog_size,
        "catalog_version": run.catalog_version,
        "embedding_model": run.encoder_model or mapped.embed_model_id,
        "accept_threshold": mapped.thresholds.accept,
        "verify_threshold": mapped.thresholds.verify,
        "thresholds_calibrated": mapped.calibrated,
        "encoded_titles": report.encoded_titles,
        "encode_calls": report.encode_calls,
        "new_catalog_vectors": run.name_vectors.new if run.name_vectors else 0,
        "llm_model": llm_model,
        "llm_calls": report.llm_calls,
        "llm_prompt_tokens": sum(m.prompt_eval_count for m in metrics),
        "llm_output_tokens": sum(m.eval_count for m in metrics),
        "llm_seconds": round(sum(m.wall_s for m in metrics), 2),
        "seconds": round(seconds, 2),
        **{f"seconds_{stage}": round(s, 3) for stage, s in sorted(report.seconds.items())},
    }
    for status in BerufenetStatus:
        metadata[f"titles_{status}"] = titles.get(str(status), 0)
    # The partition as a whole (not only this run's postings), so the plot over partitions is comparable.
    metadata["partition_postings"] = mapped.coverage.postings
    metadata["partition_postings_resolved"] = mapped.coverage.resolved
    metadata["mapping_coverage"] = dg.MetadataValue.float(mapped.coverage.share)
    return metadata


def mapping_checks(engine: Engine, mapped: DayMapping) -> list[dg.AssetCheckResult]:
    """Every valid posting has a mapping row; no uncertain-band title was left unverified."""
    day, report = mapped.day, mapped.run.report
    missing, unverified, keys = mapped.unmapped, mapped.unverified, mapped.unverified_partition_keys
    return [
        explained(
            check_name=MAPPED_CHECK, passed=missing == 0, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"postings_without_mapping": missing},
            reason=f"{missing} valid postings of {day} have no mapping row after the run (expected 0); "
            "re-materialize the partition",
            examples=posting_examples(engine, [(pid, "no mapping row") for pid in mapped.unmapped_ids])
            if missing else [],
            total_examples=missing,
        ),
        explained(
            check_name=VERIFIED_CHECK, passed=mapped.llm_unavailable_titles == 0 and mapped.error_titles == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"llm_unavailable_titles": mapped.llm_unavailable_titles, "error_titles": mapped.error_titles},
            reason=_unverified_reason(mapped.llm_unavailable_titles, mapped.error_titles,
                                      sum(len(r.group.posting_ids) for r in unverified), report.llm_problem),
            examples=[
                {"partition_key": keys.get(r.group.key, ""), "title": r.group.title,
                 "postings": len(r.group.posting_ids), "status": str(r.status),
                 "problem": r.error or report.llm_problem or ""}
                for r in unverified[:MAX_EXAMPLES]
            ],
            total_examples=len(unverified),
        ),
    ]


def open_titles_metadata(engine: Engine) -> dict[str, Any]:
    """The open failed titles, most postings first, as the table an operator picks backfill partitions from."""
    shown, total = open_failed_titles(engine, OPEN_TITLES_SHOWN)
    rows = open_titles_rows([(t.partition_key, t.title, t.posting_count, t.status, t.error) for t in shown])
    table = examples_table(rows, total=total, limit=OPEN_TITLES_SHOWN) if rows else "no open failed titles"
    return {
        "open_failed_titles": total,
        "open_failed_titles_top": dg.MetadataValue.md(
            f"{table}\n\nBackfill `berufenet_title_retry` with the partition keys to retry them."
            if rows else table
        ),
    }


def _unverified_reason(unavailable: int, errors: int, postings: int, llm_problem: str | None) -> str:
    why = f": {llm_problem}" if llm_problem else ""
    return (
        f"{unavailable + errors} titles of the uncertain band ({postings} postings) were not verified "
        f"(expected 0): {unavailable} because the LLM was unavailable{why}, {errors} failed with an error; "
        "the partition's next run retries them"
    )
