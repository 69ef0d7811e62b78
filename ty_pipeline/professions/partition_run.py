"""One daily partition of `berufenet_mappings`, against the warehouse: which postings need work, the
pipeline over their distinct titles, and the writes (per-posting rows, learned aliases, failed titles).

`map_day` is the service the asset calls (`ty_pipeline/assets/berufenet_mappings.py` is its Dagster glue):
it resolves the run's settings (calibrated thresholds, the LLM verifier and its clients), runs
`map_partition`, and reads back what the asset's checks report on.

Results are written as each stage settles them, one transaction per batch, so a crash or a kill during
the embedding or LLM stage keeps every title already decided, and the next run starts after them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine

from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.clients.llm_hosts import LlmClient
from ty_pipeline.domain.berufenet_status import RESOLVED, RETRY_NEXT_RUN, UNRESOLVED, BerufenetStatus
from ty_pipeline.domain.check_report import MAX_EXAMPLES
from ty_pipeline.domain.profession_records import KnownFailure, LearnedAlias, PostingTitle
from ty_pipeline.professions.catalog import settings_fingerprint
from ty_pipeline.professions.llm import DEFAULT_BERUFENET_MODEL, VERIFY_PROMPT, LlmChooser
from ty_pipeline.professions.pipeline import (
    EmbeddingBackend,
    MappingReport,
    MappingSettings,
    TitleCleaner,
    TitleMapper,
    TitleResult,
    Verifier,
    group_by_title,
)
from ty_pipeline.professions.thresholds import MatchThresholds, thresholds_for
from ty_pipeline.professions.vectors import NameVectorStats, build_matrix, ensure_name_vectors
from ty_pipeline.prompts import load_prompt
from ty_pipeline.warehouse import berufenet_store as store


class CatalogMissing(RuntimeError):
    """The catalog table is empty: `berufenet_catalog` was never materialized on this warehouse."""


class WarehouseSources:
    """`MappingSources` backed by the warehouse tables (one query per 500 keys)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def aliases(self, keys: Sequence[str]) -> dict[str, list[str]]:
        return store.aliases_for_keys(self.engine, keys)

    def learned(self, keys: Sequence[str]) -> dict[str, LearnedAlias]:
        return store.learned_for_keys(self.engine, keys)

    def known_failures(self, keys: Sequence[str], fingerprint: str) -> dict[str, KnownFailure]:
        return store.known_failures(self.engine, keys, fingerprint)


@dataclass
class MappingWriter:
    """The pipeline's sink: writes one batch of title results in one transaction."""

    engine: Engine
    catalog: store.StoredCatalog
    fingerprint: str
    now: Callable[[], datetime]
    failed_keys: set[str] = field(default_factory=set)
    learned: int = 0
    postings_written: int = 0

    def __call__(self, results: list[TitleResult]) -> None:
        profs = self.catalog.snapshot.professions
        now = self.now()
        rows = []
        learned = []
        failed = []
        resolved: dict[str, str] = {}
        for r in results:
            prof = profs.get(r.profession_id) if r.profession_id else None
            for pid in r.group.posting_ids:
                rows.append(store.mapping_row(pid, r.group.key, str(r.status), prof, r.score, now))
            if not r.group.key:
                continue
            if r.learnable and prof is not None:
                learned.append({"title_key": r.group.key, "title": r.group.title, "profession_id": prof.profession_id,
                                "status": str(r.status), "score": r.score, "model": r.decided_by})
            if r.status in RESOLVED and prof is not None:
                resolved[r.group.key] = prof.profession_id
            elif r.status in UNRESOLVED:
                self.failed_keys.add(r.group.key)
                if not r.remembered:
                    failed.append((len(r.group.posting_ids), r))
        # Most frequent first: rows inserted together get their `seq` in this order.
        failed.sort(key=lambda item: (-item[0], item[1].group.key))
        failed_rows = [
            {"title_key": r.group.key, "title": r.group.title, "status": str(r.status), "score": r.score,
             "candidates_json": store.candidates_json(r.candidates), "fingerprint": self.fingerprint,
             "error": r.error}
            for _n, r in failed
        ]
        with self.engine.begin() as conn:
            store.save_mappings(self.engine, rows, conn=conn)
            store.save_learned(self.engine, learned, now, conn=conn)
            store.upsert_failed_titles(self.engine, failed_rows, now, conn=conn)
            store.mark_resolved(self.engine, resolved, now, conn=conn)
        self.learned += len(learned)
        self.postings_written += len(rows)


@dataclass(frozen=True)
class MappingOptions:
    settings: MappingSettings
    reprocess: bool = False
    embed_model_id: str = ""  # the configured model (TY_EMBED_BACKEND:TY_EMBED_MODEL), for the fingerprint
    llm_model: str = ""
    prompt_version: str = ""


@dataclass
class PartitionRun:
    postings: int = 0  # valid postings of the partition
    up_to_date: int = 0  # already mapped, nothing to do
    processed: int = 0  # postings (re)mapped by this run
    titles: int = 0
    report: MappingReport = field(default_factory=MappingReport)
    catalog_size: int = 0
    catalog_version: str = ""
    fingerprint: str = ""
    encoder_model: str | None = None
    name_vectors: NameVectorStats | None = None
    learned: int = 0
    failed_titles: int = 0


def needs_work(
    posting: store.PartitionPosting, key: str, catalog: store.StoredCatalog, reprocess: bool
) -> bool:
    """A posting is (re)mapped when it has no row, its title changed, its last attempt has to be
    retried (Ollama was down, an error), or its profession vanished from the catalog."""
    if reprocess or posting.mapped_status is None:
        return True
    if (posting.mapped_key or "") != key:
        return True
    if posting.mapped_status in {str(s) for s in RETRY_NEXT_RUN}:
        return True
    return bool(posting.mapped_profession) and posting.mapped_profession not in catalog.snapshot.professions


def map_partition(
    engine: Engine,
    day: date,
    options: MappingOptions,
    *,
    open_encoder: Callable[[], AbstractContextManager[TextEncoder]],
    verifier: Callable[[], Verifier] | None,
    verifier_problem: str | None,
    now: Callable[[], datetime],
    log: Callable[[str], None] = lambda _m: None,
) -> PartitionRun:
    catalog = store.load_catalog(engine)
    if catalog.empty:
        raise CatalogMissing(
            "The profession catalog is empty. Materialize the `berufenet_catalog` asset first "
            "(it reads the KldB directory shipped in data/kldb/, or TY_KLDB_CSV when that is set)."
        )
    settings = options.settings
    run = PartitionRun(catalog_size=len(catalog.snapshot), catalog_version=catalog.snapshot.version)
    run.fingerprint = settings_fingerprint(
        catalog=catalog.snapshot.version, embed_model=options.embed_model_id, accept=settings.thresholds.accept,
        verify=settings.thresholds.verify, top_k=settings.top_k, llm_verify=settings.llm_verify,
        llm_model=options.llm_model if settings.llm_verify else "", prompt=options.prompt_version,
    )
    cleaner = TitleCleaner()
    pending: list[PostingTitle] = []
    for posting in store.load_partition_postings(engine, day):
        run.postings += 1
        _text, key = cleaner(posting.posting.title, posting.posting.city)
        if needs_work(posting, key, catalog, options.reprocess):
            pending.append(posting.posting)
        else:
            run.up_to_date += 1
    run.processed = len(pending)
    groups = group_by_title(pending, cleaner)
    run.titles = sum(1 for g in groups if g.key)
    log(f"{day}: {run.postings} postings, {run.up_to_date} already mapped, {run.processed} to map "
        f"({run.titles} distinct titles) against {run.catalog_size} catalog entries")

    writer = MappingWriter(engine, catalog, run.fingerprint, now)
    with _LazyEmbedding(engine, catalog, open_encoder, now, log) as embedding:
        mapper = TitleMapper(
            catalog.snapshot, WarehouseSources(engine), settings, fingerprint=run.fingerprint,
            embedding=embedding.backend, verifier=verifier if settings.llm_verify else None,
            verifier_problem=verifier_problem, sink=writer, log=log,
        )
        run.report = mapper.run(groups)
        run.encoder_model = embedding.model
        run.name_vectors = embedding.stats
    if writer.failed_keys:
        store.refresh_posting_counts(engine, sorted(writer.failed_keys))
    run.learned = writer.learned
    run.failed_titles = len(writer.failed_keys)
    return run


class _LazyEmbedding:
    """Opens the encoder and builds the catalog matrix on first use; closes the encoder at the end."""

    def __init__(
        self, engine: Engine, catalog: store.StoredCatalog,
        open_encoder: Callable[[], AbstractContextManager[TextEncoder]], now: Callable[[], datetime],
        log: Callable[[str], None],
    ) -> None:
        self.engine, self.catalog, self.open_encoder, self.now, self.log = engine, catalog, open_encoder, now, log
        self._cm: AbstractContextManager[TextEncoder] | None = None
        self._backend: EmbeddingBackend | None = None
        self.model: str | None = None
        self.stats: NameVectorStats | None = None

    def backend(self) -> EmbeddingBackend:
        if self._backend is None:
            self._cm = self.open_encoder()
            encoder = self._cm.__enter__()
            self.model = encoder.model_id
            vectors, self.stats = ensure_name_vectors(self.engine, encoder, self.catalog, self.now, log=self.log)
            if self.stats.new:
                self.log(f"{self.stats.new} catalog names had no {encoder.model_id} vector yet and were encoded "
                         "(materialize `berufenet_catalog` after changing the embedding model to do this once)")
            self._backend = EmbeddingBackend(encoder, build_matrix(self.catalog, vectors, encoder.model_id))
        return self._backend

    def __enter__(self) -> _LazyEmbedding:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)


@dataclass(frozen=True)
class DaySettings:
    """The asset's run config as plain values (see `BerufenetMappingConfig` for each one's meaning)."""

    accept_threshold: float | None = None  # None: calibrated for the embedding model
    verify_threshold: float | None = None
    top_k: int = 5
    llm_verify: bool = True
    llm_model: str = DEFAULT_BERUFENET_MODEL  # empty: no LLM configured
    llm_workers: int = 2
    encode_batch: int = 256
    reprocess: bool = False


@dataclass
class DayMapping:
    """One `map_day`: the partition run, the settings it resolved, and the warehouse after it."""

    day: date
    run: PartitionRun
    embed_model_id: str  # the configured encoder (`run.encoder_model` is set only when it was opened)
    thresholds: MatchThresholds
    calibrated: bool
    coverage: store.MappingCoverage  # the whole partition, not only this run's postings
    unmapped: int  # valid postings of the partition without a mapping row
    unmapped_ids: list[int]  # the first of them (a failing check's examples)
    # Uncertain-band titles left unverified (LLM unavailable or an error), most postings first.
    unverified: list[TitleResult] = field(default_factory=list)
    unverified_partition_keys: dict[str, str] = field(default_factory=dict)  # title_key -> failed-title key

    @property
    def titles_by_status(self) -> Counter[str]:
        return self.run.report.titles_by_status()

    @property
    def postings_by_status(self) -> Counter[str]:
        return self.run.report.postings_by_status()

    @property
    def resolved_postings(self) -> int:
        return sum(n for s, n in self.postings_by_status.items() if s in RESOLVED)

    @property
    def llm_unavailable_titles(self) -> int:
        return self.titles_by_status.get(str(BerufenetStatus.LLM_UNAVAILABLE), 0)

    @property
    def error_titles(self) -> int:
        return self.titles_by_status.get(str(BerufenetStatus.ERROR), 0)


def map_day(
    engine: Engine,
    day: date,
    settings: DaySettings,
    *,
    embed_model_id: str,
    open_encoder: Callable[[], AbstractContextManager[TextEncoder]],
    open_llm_client: Callable[[], LlmClient],
    now: Callable[[], datetime],
    log: Callable[[str], None] = lambda _m: None,
    warn: Callable[[str], None] = lambda _m: None,
) -> DayMapping:
    """Map the partition's postings with `settings`, then read what the checks need from the warehouse.

    The LLM client is opened and preflighted only when a title reaches the uncertain band (a failing
    preflight leaves the band `llm_unavailable`, with the reason in `report.llm_problem`), and closed at
    the end. Raises `CatalogMissing` before any write when the catalog is empty.
    """
    thresholds, calibrated = thresholds_for(
        embed_model_id, accept=settings.accept_threshold, verify=settings.verify_threshold
    )
    if not calibrated:
        warn(
            f"No calibrated thresholds for {embed_model_id}: using accept={thresholds.accept}, "
            f"verify={thresholds.verify}. Run bench/bench_berufenet.py with this model and add it to "
            "professions/thresholds.py."
        )
    mapping = MappingSettings(
        thresholds=thresholds, top_k=settings.top_k, llm_verify=settings.llm_verify,
        encode_batch=settings.encode_batch, llm_workers=settings.llm_workers,
    )
    clients: list[LlmClient] = []
    verifier: Callable[[], Verifier] | None = None
    problem: str | None = None
    if not settings.llm_model:
        problem = "no LLM is configured for verification (llm_model is empty)"
    else:
        def make_verifier() -> Verifier:
            client = open_llm_client()
            clients.append(client)
            client.preflight([settings.llm_model])  # fails fast with the client's message
            return LlmChooser(client, settings.llm_model)

        verifier = make_verifier
    try:
        run = map_partition(
            engine, day,
            MappingOptions(settings=mapping, reprocess=settings.reprocess, embed_model_id=embed_model_id,
                           llm_model=settings.llm_model, prompt_version=load_prompt(VERIFY_PROMPT).version),
            open_encoder=open_encoder, verifier=verifier, verifier_problem=problem, now=now, log=log,
        )
    finally:
        for client in clients:
            client.close()

    unmapped = store.unmapped_postings(engine, day)
    unverified = sorted(
        (r for r in run.report.results if r.status in (BerufenetStatus.LLM_UNAVAILABLE, BerufenetStatus.ERROR)),
        key=lambda r: -len(r.group.posting_ids),  # the titles that leave most postings unmapped first
    )
    return DayMapping(
        day=day, run=run, embed_model_id=embed_model_id, thresholds=thresholds, calibrated=calibrated,
        coverage=store.partition_mapping_coverage(engine, day),
        unmapped=unmapped, unmapped_ids=store.unmapped_posting_ids(engine, day) if unmapped else [],
        unverified=unverified,
        unverified_partition_keys=store.partition_keys_of(
            engine, [r.group.key for r in unverified[:MAX_EXAMPLES] if r.group.key]
        ),
    )
