"""The `berufenet_catalog` asset: the profession catalog the title mapper classifies into."""


import time

import dagster as dg

from ty_pipeline.assets.check_report import explained
from ty_pipeline.domain.catalog_guard import DEFAULT_MIN_SHARE_OF_STORED, CatalogRejected
from ty_pipeline.domain.clock import utcnow
from ty_pipeline.domain.kldb_catalog import QUALIFICATION_LEVELS
from ty_pipeline.domain.pool_names import OLLAMA_POOL
from ty_pipeline.domain.urls import redact_url, redact_urls_in
from ty_pipeline.professions.catalog_build import build_catalog
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.step_retries import retried_asset

CATALOG_CHECK = "catalog_names_embedded"


class CatalogConfig(dg.Config):
    encode_batch: int = 64  # names per encoder call (short texts: larger batches pad little)
    # The build is refused when the file parses fewer entries than this share of the stored ones
    # (a cut download); 0 accepts a deliberately smaller catalog for one run.
    min_share_of_stored: float = DEFAULT_MIN_SHARE_OF_STORED


# `on_missing` only fires when the catalog *becomes* missing after the sensor's first evaluation (Dagster
# 1.13): a fresh install, where it is missing from the start, was never built. The second branch builds it
# at the first evaluation, once (not again while that run is in progress).
CATALOG_AUTOMATION = (
    dg.AutomationCondition.on_missing()
    | (dg.AutomationCondition.initial_evaluation() & dg.AutomationCondition.missing()
       & ~dg.AutomationCondition.in_progress())
).with_label("built when missing")


@retried_asset(
    group_name="professions",
    kinds={"python", "sql"},
    # TY_EMBED_BACKEND=ollama sends the embeddings to the GPU server: share its pool with the LLM steps.
    # The step also calls the BERUFENET API (with TY_BERUFENET_API_URL set), but an op has one pool only.
    # It needs no pool of its own: the catalog is unpartitioned, so at the `ollama` limit of 1 no two
    # builds run at once and its `berufenet_requests_per_s` is the rate BERUFENET sees.
    pool=OLLAMA_POOL,
    # Built once when missing (with `default_automation_condition_sensor` on); after changing TY_KLDB_CSV,
    # TY_BERUFENET_API_URL or the embedding model, materialize it again by hand.
    automation_condition=CATALOG_AUTOMATION,
    check_specs=[
        dg.AssetCheckSpec(
            CATALOG_CHECK,
            asset="berufenet_catalog",
            description="Every catalog name has a usable vector for the configured embedding model.",
        )
    ],
    description=(
        "Professions titles are mapped to: the named professions and five-digit occupations of the KldB 2010 "
        "directory shipped in data/kldb/ (TY_KLDB_CSV: another edition, or 'seed' for the small seed "
        "catalog); with TY_BERUFENET_API_URL set, plus the professions of the BERUFENET REST API (ids 'bn-<Berufs-ID>'). Replaced in one "
        "transaction together with its alias index; name embeddings are cached by content hash in the "
        "shared `embeddings` table, so a rebuild only encodes names it has not seen."
    ),
)
def berufenet_catalog(
    context: dg.AssetExecutionContext,
    config: CatalogConfig,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    ollama: OllamaResource,
    profession_catalog: ProfessionCatalogResource,
) -> dg.MaterializeResult:
    started = time.monotonic()
    engine = warehouse.get_engine()
    try:
        loaded = profession_catalog.load(log=context.log.info)
    except (ValueError, UnicodeDecodeError) as exc:  # a damaged or wrong file: retrying reads the same bytes
        raise dg.Failure(
            description=f"profession catalog not built, the stored one is kept: {redact_urls_in(str(exc))}",
            allow_retries=False,
        ) from exc
    api = loaded.berufenet
    if api is not None:
        context.log.info(
            f"BERUFENET API {redact_url(api.base_url)}: {api.listed} listed on {api.pages} pages (API reports "
            f"{api.reported_total}), {api.fetched} details fetched, {len(api.professions)} professions kept"
        )
        if api.skipped_no_kldb or api.skipped_no_name:
            context.log.warning(f"BERUFENET details skipped (no usable kldb2010 or name): "
                                f"{api.skipped_no_kldb + api.skipped_no_name}, e.g. {list(api.skipped_examples)}")
        if api.failed:
            context.log.warning(f"BERUFENET detail calls failed after retries: {api.failed}, "
                                f"e.g. {list(api.failed_examples)}")
        if api.reported_total is not None and api.listed + api.invalid_list_entries < api.reported_total:
            context.log.warning(f"BERUFENET list gave {api.listed} professions but reports {api.reported_total}")
    try:
        build = build_catalog(
            engine, loaded, open_encoder=embedder.encoder_opener(ollama), now=utcnow, batch_size=config.encode_batch,
            log=context.log.info, min_share_of_stored=config.min_share_of_stored,
        )
    except CatalogRejected as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for text in build.vectors.failed[:10]:
        context.log.warning(f"no usable vector for catalog name {text!r}")
    context.log.info(
        f"catalog: {build.entries} entries ({dict(build.by_source)}), {build.alias_keys} alias keys, "
        f"{build.vectors.new} new and {build.vectors.cached} cached name vectors ({build.model})"
    )
    metadata: dict[str, dg.RawMetadataValue] = {
        "origin": loaded.origin,
        "entries": build.entries,
        "occupations_in_file": loaded.occupations,
        "domains": build.domains,
        "alias_keys": build.alias_keys,
        "alias_rows": build.alias_rows,
        "distinct_names": build.distinct_names,
        "catalog_version": build.version,
        "embedding_model": build.model,
        "new_embeddings": build.vectors.new,
        "cached_embeddings": build.vectors.cached,
        "failed_embeddings": len(build.vectors.failed),
        "seconds": round(time.monotonic() - started, 2),
        "by_source": dg.MetadataValue.json(dict(sorted(build.by_source.items()))),
        "by_level": dg.MetadataValue.json(
            {f"{lv} {QUALIFICATION_LEVELS[lv]}": n for lv, n in sorted(build.by_level.items())}
        ),
    }
    if api is not None:
        metadata.update({
            "berufenet_listed": api.listed,
            "berufenet_fetched": api.fetched,
            "berufenet_skipped_no_kldb": api.skipped_no_kldb,
            # Details without a usable name, including names that were only control characters.
            "berufenet_skipped_no_name": api.skipped_no_name,
            "berufenet_failed": api.failed,
            "berufenet_pages": api.pages,
            "berufenet_seconds": api.seconds,
        })
        if api.pacing:  # the same figures as the job APIs' `requests_<source>`
            metadata["requests_berufenet"] = dg.MetadataValue.json(api.pacing)
    for source, n in sorted(build.by_source.items()):
        metadata[f"entries_{source}"] = n
    for level, n in sorted(build.by_level.items()):
        metadata[f"level_{level}"] = n
    embedded = build.vectors.new + build.vectors.cached
    return dg.MaterializeResult(
        metadata=metadata, check_results=[catalog_check(build.distinct_names, embedded, build.vectors.failed)]
    )


def catalog_check(distinct_names: int, embedded: int, failed: list[str]) -> dg.AssetCheckResult:
    """Every distinct profession name has a name vector; the names without one are the examples."""
    return explained(
        check_name=CATALOG_CHECK,
        passed=not failed and embedded == distinct_names,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"distinct_names": distinct_names, "embedded": embedded, "failed": len(failed)},
        reason=f"{distinct_names - embedded} of {distinct_names} distinct profession names have no name vector "
        f"({len(failed)} returned an unusable vector; expected 0): titles close to them cannot be matched by "
        "embedding; materialize the catalog again",
        examples=[{"profession name": name, "problem": "no usable vector (NaN or zero)"} for name in failed],
        total_examples=len(failed),
    )
