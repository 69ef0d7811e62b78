"""Building the warehouse catalog: rows, alias index and name vectors from a loaded catalog file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.domain.catalog_guard import DEFAULT_MIN_SHARE_OF_STORED, check_catalog_size
from ty_pipeline.domain.profession_names import build_alias_index
from ty_pipeline.domain.profession_records import CatalogSnapshot
from ty_pipeline.professions.catalog import SOURCE_BERUFENET, LoadedCatalog, warehouse_rows
from ty_pipeline.professions.vectors import NameVectorStats, ensure_name_vectors
from ty_pipeline.warehouse import berufenet_store as store


@dataclass
class CatalogBuild:
    entries: int = 0
    by_level: Counter[int] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)
    domains: int = 0
    alias_keys: int = 0
    alias_rows: int = 0
    distinct_names: int = 0
    version: str = ""
    model: str = ""
    vectors: NameVectorStats = field(default_factory=NameVectorStats)


def build_catalog(
    engine: Engine,
    loaded: LoadedCatalog,
    *,
    open_encoder: Callable[[], AbstractContextManager[TextEncoder]],
    now: Callable[[], datetime],
    batch_size: int = 64,
    log: Callable[[str], None] = lambda _m: None,
    min_share_of_stored: float = DEFAULT_MIN_SHARE_OF_STORED,
) -> CatalogBuild:
    """Replace catalog + alias index in one transaction, then make sure every name has a vector.

    Raises `CatalogRejected` (and writes nothing) when the file parsed far fewer entries than are stored.
    Only the file's entries are compared: the BERUFENET API part has its own failure budget.
    """
    rows = warehouse_rows(loaded)
    stored = store.catalog_counts_by_source(engine)
    stored_file = sum(n for source, n in stored.items() if source != SOURCE_BERUFENET)
    parsed_file = sum(1 for r in rows if r["source"] != SOURCE_BERUFENET)
    if not rows:
        check_catalog_size(loaded.origin, 0, sum(stored.values()), min_share_of_stored)
    elif parsed_file or stored_file:
        check_catalog_size(loaded.origin, parsed_file, stored_file, min_share_of_stored)
    index = build_alias_index(loaded.professions)
    store.replace_catalog(engine, rows, index, now())
    build = CatalogBuild(
        entries=len(rows),
        by_level=Counter(int(r["qualification_level"]) for r in rows),
        by_source=Counter(str(r["source"]) for r in rows),
        domains=len({r["domain_code"] for r in rows}),
        alias_keys=len(index),
        alias_rows=sum(len(ids) for ids in index.values()),
        distinct_names=len({r["embed_hash"] for r in rows}),
        version=CatalogSnapshot.from_professions(loaded.professions).version,
    )
    log(f"catalog from {loaded.origin}: {build.entries} entries, {build.alias_keys} alias keys; embedding names")
    catalog = store.load_catalog(engine)
    with open_encoder() as encoder:
        build.model = encoder.model_id
        # Only that every name has a vector matters here: the mapping steps load them when they match.
        _none, build.vectors = ensure_name_vectors(engine, encoder, catalog, now, batch_size=batch_size, log=log,
                                                   keep_vectors=False)
    return build
