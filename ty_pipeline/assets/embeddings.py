"""The `posting_embeddings` asset: content-addressed text embeddings for the partition's postings."""


import time

import dagster as dg

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.domain.check_report import MAX_EXAMPLES
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.embedding_text import MIN_EMBED_CHARS, SkipReason
from ty_pipeline.enrichment.embeddings import count_missing, embed_partition
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.embeddings_store import audit_vectors, postings_linked_to

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
    pool="ollama",
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
        model = encoder.model_id
        max_chars = embedder.chunk_chars(encoder)
        batch_size = embedder.encode_batch_size()
        context.log.info(
            f"{day}: embedding with {model} in pages of {config.commit_every} postings, {batch_size} chunks per "
            f"call, chunks of at most {max_chars} chars"
        )
        run = embed_partition(engine, day, encoder, max_chars=max_chars, batch_size=batch_size,
                              page_size=config.commit_every, now=utcnow, log=context.log.info)

    audit = audit_vectors(engine, day=day)
    # Certify from what is stored now, with the same planner: anything still pending is missing.
    missing, missing_ids = count_missing(engine, day, model, examples=MAX_EXAMPLES)
    for h in run.failed_examples:
        context.log.warning(f"unusable vector (NaN or zero) for text {h[:12]}…; left without embedding")
    for example in audit.examples:
        context.log.error(example)

    seconds = time.monotonic() - started
    metadata: dict[str, dg.RawMetadataValue] = {
        "model": model,
        "window_tokens": encoder.window_tokens,
        "max_chars_per_chunk": max_chars,
        "batch_size": batch_size,
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
        "eligible_without_current_embedding": missing,
        # Share 0..1 of the day's eligible postings with a current vector: the number the UI plots.
        "embedding_coverage": round((run.eligible - missing) / run.eligible, 4) if run.eligible else 1.0,
        "corrupt_hashes": audit.corrupt_hashes,
        "invalid_vectors": audit.invalid_vectors,
        "vectors_audited": audit.checked,
    }
    if run.dim:
        metadata["dim"] = run.dim
    context.log.info(
        f"{day}: {run.new} new vectors, {run.cached} cached, {run.up_to_date} up to date, "
        f"{sum(run.skipped.values())} skipped, {run.failed} failed; missing {missing}, corrupt {audit.corrupt_hashes}"
    )
    passed = missing == 0 and audit.corrupt_hashes == 0 and audit.invalid_vectors == 0
    offenders = [(pid, "no current embedding (unusable vector or encoding failed)") for pid in missing_ids]
    if not passed:
        offenders += [(pid, audit.bad_hashes[h]) for pid, h in postings_linked_to(engine, audit.bad_hashes, day)]
    check = explained(
        check_name=EMBEDDING_CHECK,
        passed=passed,
        reason=f"{missing} eligible postings of {day} have no current embedding, {audit.corrupt_hashes} stored vectors "
        f"have a hash that does not match their text and {audit.invalid_vectors} are not unit vectors (expected 0 "
        "each); the next run embeds the missing ones",
        examples=[] if passed else posting_examples(engine, offenders),
        total_examples=missing + audit.corrupt_hashes + audit.invalid_vectors,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "eligible_without_current_embedding": missing,
            "corrupt_hashes": audit.corrupt_hashes,
            "invalid_vectors": audit.invalid_vectors,
            "examples": dg.MetadataValue.md("\n".join(f"- {e}" for e in audit.examples) or "none"),
        },
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
