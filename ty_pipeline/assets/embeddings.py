"""The `posting_embeddings` asset: content-addressed text embeddings for the partition's postings."""


import time
from dataclasses import dataclass
from datetime import date

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.check_report import MAX_EXAMPLES
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.embedding_text import MIN_EMBED_CHARS, SkipReason
from ty_pipeline.domain.pool_names import OLLAMA_POOL
from ty_pipeline.enrichment.embeddings import Certification, EmbedRun, certify_partition, embed_partition
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset

EMBEDDING_CHECK = "embedding_certified"
# The text is the passed summary when there is one, else the description; both must be current first.
UPSTREAM = ["job_descriptions", "posting_summaries"]


class EmbeddingsConfig(dg.Config):
    # Postings read, encoded and committed together: memory holds one page, a crash loses at most one.
    commit_every: int = 256


@retried_asset(
    partitions_def=daily_partitions,
    group_name="market",
    kinds={"python", "sql"},
    # TY_EMBED_BACKEND=ollama sends the embeddings to the GPU server: share its pool with the LLM steps.
    pool=OLLAMA_POOL,
    deps=UPSTREAM,
    check_specs=[
        dg.AssetCheckSpec(
            EMBEDDING_CHECK,
            asset="posting_embeddings",
            partitions_def=daily_partitions,
            description=(
                "Every eligible posting of the partition has a current embedding, and every vector they point "
                "at has the hash of its stored text (the replaced system's `need = 0` and `corrupt = 0`)."
            ),
        )
    ],
    description=(
        "One vector per posting text (the passed summary, else the description), content-addressed by the "
        f"SHA-256 of the normalised text and shared across postings, runs and catalog names. Texts under "
        f"{MIN_EMBED_CHARS} characters are skipped; longer texts than the model window are chunked and "
        "mean-pooled, never skipped. A changed text is re-embedded and its old link kept as history."
    ),
)
def posting_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingsConfig,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    ollama: OllamaResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    engine = warehouse.get_engine()
    started = time.monotonic()
    with embedder.open_encoder(ollama) as encoder:
        shape = EncodeShape(encoder.model_id, encoder.window_tokens, embedder.chunk_chars(encoder),
                            embedder.encode_batch_size())
        context.log.info(
            f"{day}: embedding with {shape.model} in pages of {config.commit_every} postings, {shape.batch_size} "
            f"chunks per call, chunks of at most {shape.max_chars} chars"
        )
        run = embed_partition(engine, day, encoder, max_chars=shape.max_chars, batch_size=shape.batch_size,
                              page_size=config.commit_every, now=utcnow, log=context.log.info)
    cert = certify_partition(engine, day, shape.model, examples=MAX_EXAMPLES)
    for h in run.failed_examples:
        context.log.warning(f"unusable vector (NaN or zero) for text {h[:12]}…; left without embedding")
    for example in cert.audit.examples:
        context.log.error(example)
    context.log.info(
        f"{day}: {run.new} new vectors, {run.cached} cached, {run.up_to_date} up to date, "
        f"{sum(run.skipped.values())} skipped, {run.failed} failed; missing {cert.missing}, "
        f"corrupt {cert.audit.corrupt_hashes}"
    )
    return dg.MaterializeResult(
        metadata=run_metadata(run, cert, shape, time.monotonic() - started),
        check_results=[certified_check(engine, day, cert)],
    )


@dataclass(frozen=True)
class EncodeShape:
    """How the run encoded: the model, its window, and the chunk and batch sizes the resource chose."""

    model: str
    window_tokens: int
    max_chars: int
    batch_size: int


def run_metadata(run: EmbedRun, cert: Certification, shape: EncodeShape, seconds: float) -> "dict[str, dg.RawMetadataValue]":
    metadata: dict[str, dg.RawMetadataValue] = {
        "model": shape.model,
        "window_tokens": shape.window_tokens,
        "max_chars_per_chunk": shape.max_chars,
        "batch_size": shape.batch_size,
        "pages": run.pages,
        "processed": run.processed,
        "eligible": run.eligible,
        "up_to_date": run.up_to_date,
        "cached": run.cached,
        "new": run.new,
        "embedded_postings": run.embedded_postings,
        "changed_text": run.changed_text,
        "skipped": sum(run.skipped.values()),
        "skipped_too_short": run.skipped[SkipReason.TOO_SHORT],
        "skipped_no_text": run.skipped[SkipReason.NO_TEXT],
        "failed": run.failed,
        "chunked_texts": run.chunked_texts,
        "chunks_encoded": run.chunks,
        "duplicate_chunks": run.duplicate_chunks,
        "encode_calls": run.encode_calls,
        "seconds": round(seconds, 2),
        "encode_seconds": round(run.encode_seconds, 2),
        "texts_per_s": round(run.new / run.encode_seconds, 2) if run.encode_seconds > 0 else 0.0,
        "chunks_per_s": round(run.chunks / run.encode_seconds, 2) if run.encode_seconds > 0 else 0.0,
        "eligible_without_current_embedding": cert.missing,
        # Share 0..1 of the day's eligible postings with a current vector: the number the UI plots.
        "embedding_coverage": round((run.eligible - cert.missing) / run.eligible, 4) if run.eligible else 1.0,
        "corrupt_hashes": cert.audit.corrupt_hashes,
        "invalid_vectors": cert.audit.invalid_vectors,
        "vectors_audited": cert.audit.checked,
    }
    if run.dim:
        metadata["dim"] = run.dim
    return metadata


def certified_check(engine: sa.Engine, day: date, cert: Certification) -> dg.AssetCheckResult:
    audit = cert.audit
    return explained(
        check_name=EMBEDDING_CHECK,
        passed=cert.passed,
        reason=f"{cert.missing} eligible postings of {day} have no current embedding, {audit.corrupt_hashes} stored "
        f"vectors have a hash that does not match their text and {audit.invalid_vectors} are not unit vectors "
        "(expected 0 each); the next run embeds the missing ones",
        examples=[] if cert.passed else posting_examples(engine, cert.offenders),
        total_examples=cert.missing + audit.corrupt_hashes + audit.invalid_vectors,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "eligible_without_current_embedding": cert.missing,
            "corrupt_hashes": audit.corrupt_hashes,
            "invalid_vectors": audit.invalid_vectors,
            "examples": dg.MetadataValue.md("\n".join(f"- {e}" for e in audit.examples) or "none"),
        },
    )
