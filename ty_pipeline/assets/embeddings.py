"""The `posting_embeddings` asset: content-addressed text embeddings for the partition's postings."""


import time

import dagster as dg

from ty_pipeline.assets.check_report import explained, posting_examples
from ty_pipeline.assets.postings import utcnow
from ty_pipeline.clients.embedder import encode_texts
from ty_pipeline.domain.embedding_text import MIN_EMBED_CHARS, SkipReason, plan_embeddings
from ty_pipeline.domain.progress import Progress
from ty_pipeline.partitions import daily_partitions, partition_date
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset
from ty_pipeline.warehouse.embeddings_store import (
    NewVector,
    audit_vectors,
    existing_hashes,
    link_postings,
    load_posting_texts,
    postings_linked_to,
    retire_links,
    save_vectors,
)

EMBEDDING_CHECK = "embedding_certified"
# The text is the passed summary when there is one, else the description; both must be current first.
UPSTREAM = ["job_descriptions", "posting_summaries"]


class EmbeddingsConfig(dg.Config):
    commit_every: int = 256  # distinct texts encoded per transaction: a crash loses at most this much work


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
        plan = plan_embeddings(load_posting_texts(engine, day), model)
        retire_links(engine, plan.retire, utcnow())

        cached_hashes = existing_hashes(engine, plan.to_link, model)
        cached_links = [(pid, h) for h in cached_hashes for pid in plan.to_link[h]]
        link_postings(engine, cached_links, model, utcnow())
        to_encode = [h for h in plan.to_link if h not in cached_hashes]
        context.log.info(
            f"{day}: {plan.processed} postings, {len(plan.up_to_date)} up to date, {len(cached_links)} linked to "
            f"stored vectors, {len(to_encode)} texts to encode with {model} (chunks of at most {max_chars} chars)"
        )

        progress = Progress("embeddings", len(to_encode), context.log.info)
        encode_seconds = 0.0
        new = embedded_postings = chunks = chunked = calls = 0
        failed: list[str] = []
        dim = 0
        step = max(1, config.commit_every)
        for start in range(0, len(to_encode), step):
            batch = to_encode[start : start + step]
            t0 = time.monotonic()
            encoded = encode_texts(
                encoder, [plan.texts[h] for h in batch], max_chars=max_chars, batch_size=embedder.batch_size
            )
            encode_seconds += time.monotonic() - t0
            chunks += encoded.chunks
            chunked += encoded.chunked_texts
            calls += encoded.encode_calls
            vectors: list[NewVector] = []
            for h, vector in zip(batch, encoded.vectors, strict=True):
                if vector is None:
                    failed.append(h)
                    continue
                dim = int(vector.shape[0])
                vectors.append(NewVector(h, plan.texts[h], vector))
            links = [(pid, v.text_hash) for v in vectors for pid in plan.to_link[v.text_hash]]
            save_vectors(engine, model, vectors, links, utcnow())  # committed: a retry starts after this batch
            new += len(vectors)
            embedded_postings += len(links)
            progress.step(len(batch))

    audit = audit_vectors(engine, day=day)
    # Certify from what is stored now, with the same planner: anything still pending is missing.
    final = plan_embeddings(load_posting_texts(engine, day), model)
    missing = final.pending
    for h in failed[:10]:
        context.log.warning(f"unusable vector (NaN or zero) for text {h[:12]}…; left without embedding")
    for example in audit.examples:
        context.log.error(example)

    seconds = time.monotonic() - started
    metadata: dict[str, dg.RawMetadataValue] = {
        "model": model,
        "window_tokens": encoder.window_tokens,
        "max_chars_per_chunk": max_chars,
        "processed": plan.processed,
        "eligible": plan.eligible,
        "up_to_date": len(plan.up_to_date),
        "cached": len(cached_links),
        "new": new,
        "embedded_postings": embedded_postings,
        "changed_text": plan.changed_text,
        "skipped": sum(plan.skipped.values()),
        "skipped_too_short": plan.skipped[SkipReason.TOO_SHORT],
        "skipped_no_text": plan.skipped[SkipReason.NO_TEXT],
        "failed": len(failed),
        "chunked_texts": chunked,
        "chunks_encoded": chunks,
        "encode_calls": calls,
        "seconds": round(seconds, 2),
        "encode_seconds": round(encode_seconds, 2),
        "texts_per_s": round(new / encode_seconds, 2) if encode_seconds > 0 else 0.0,
        "eligible_without_current_embedding": missing,
        "corrupt_hashes": audit.corrupt_hashes,
        "invalid_vectors": audit.invalid_vectors,
        "vectors_audited": audit.checked,
    }
    if dim:
        metadata["dim"] = dim
    context.log.info(
        f"{day}: {new} new vectors, {len(cached_links)} cached, {len(plan.up_to_date)} up to date, "
        f"{sum(plan.skipped.values())} skipped, {len(failed)} failed; missing {missing}, corrupt {audit.corrupt_hashes}"
    )
    passed = missing == 0 and audit.corrupt_hashes == 0 and audit.invalid_vectors == 0
    offenders = [(pid, "no current embedding (unusable vector or encoding failed)")
                 for ids in final.to_link.values() for pid in ids]
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
