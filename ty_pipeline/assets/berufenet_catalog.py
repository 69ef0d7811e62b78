"""The `berufenet_catalog` asset: the profession catalog the title mapper classifies into."""


import time

import dagster as dg

from ty_pipeline.assets.postings import utcnow
from ty_pipeline.domain.kldb_catalog import QUALIFICATION_LEVELS
from ty_pipeline.professions.catalog_build import build_catalog
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.berufenet_store import ensure_indexes

CATALOG_CHECK = "catalog_names_embedded"


class CatalogConfig(dg.Config):
    encode_batch: int = 64  # names per encoder call (short texts: larger batches pad little)


@dg.asset(
    group_name="professions",
    kinds={"python", "sql"},
    # Built once when missing (with `default_automation_condition_sensor` on); after changing TY_KLDB_CSV or
    # the embedding model, materialize it again by hand.
    automation_condition=dg.AutomationCondition.on_missing(),
    check_specs=[
        dg.AssetCheckSpec(
            CATALOG_CHECK,
            asset="berufenet_catalog",
            description="Every catalog name has a usable vector for the configured embedding model.",
        )
    ],
    description=(
        "Professions titles are mapped to: the named professions and five-digit occupations of the KldB 2010 "
        "directory (TY_KLDB_CSV), or the seed catalog in data/ when that is not set. Replaced in one "
        "transaction together with its alias index; name embeddings are cached by content hash in the "
        "shared `embeddings` table, so a rebuild only encodes names it has not seen."
    ),
)
def berufenet_catalog(
    context: dg.AssetExecutionContext,
    config: CatalogConfig,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    profession_catalog: ProfessionCatalogResource,
) -> dg.MaterializeResult:
    started = time.monotonic()
    engine = warehouse.get_engine()
    ensure_indexes(engine)
    loaded = profession_catalog.load()
    build = build_catalog(
        engine, loaded, open_encoder=embedder.open_encoder, now=utcnow, batch_size=config.encode_batch,
        log=context.log.info,
    )
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
    for source, n in sorted(build.by_source.items()):
        metadata[f"entries_{source}"] = n
    for level, n in sorted(build.by_level.items()):
        metadata[f"level_{level}"] = n
    embedded = build.vectors.new + build.vectors.cached
    check = dg.AssetCheckResult(
        check_name=CATALOG_CHECK,
        passed=not build.vectors.failed and embedded == build.distinct_names,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"distinct_names": build.distinct_names, "embedded": embedded,
                  "failed": len(build.vectors.failed)},
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
