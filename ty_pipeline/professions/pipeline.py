"""The title -> profession pipeline: distinct titles through the stages, cheapest first.

1. `beruf_label`: the Jobsuche label of the title's postings (most common first) looked up in the alias
   index; postings from the BA arrive pre-labelled, which took upstream coverage from 18 % to 70 %.
2. `exact` / `alias_unanimous` / `alias_majority`: the cleaned title in the alias index, resolved with
   the three-tier rule of `profession_names.resolve_candidates`.
3. `learned`: a title some earlier run resolved by embedding or LLM; and the remembered failures of
   titles that the same settings already could not resolve. Nothing is classified twice.
4. embedding: the remaining titles are encoded in batches and compared with every catalog name in one
   matrix product per batch; the top-1 score decides `embedding_high`, the uncertain band or `no_match`.
5. LLM verify, for the uncertain band only: the model picks one of the top-k or none.

Everything here is plain Python with injected sources (warehouse or in-memory), so the asset is thin
glue and the benchmark measures exactly the code the asset runs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.clients.ollama import (
    OllamaError,
    OllamaModelMissing,
    OllamaTransientError,
    OllamaUnavailable,
)
from ty_pipeline.domain.berufenet_status import LEARNABLE, BerufenetStatus
from ty_pipeline.domain.concurrency import Bounded
from ty_pipeline.domain.profession_matching import Candidate, CatalogMatrix, rank_candidates
from ty_pipeline.domain.profession_names import AliasResolution, AliasTier, resolve_candidates
from ty_pipeline.domain.profession_records import CatalogSnapshot, KnownFailure, LearnedAlias, PostingTitle
from ty_pipeline.domain.progress import Progress
from ty_pipeline.domain.titles import clean_job_title, title_key
from ty_pipeline.domain.vectors import usable_vector
from ty_pipeline.professions.llm import Choice
from ty_pipeline.professions.thresholds import MatchThresholds

# The server's failures, not the title's: the rest of the band is not attempted and every title not
# decided stays `llm_unavailable` (retried next run), never `error`.
SERVER_FAILURES = (OllamaUnavailable, OllamaModelMissing, OllamaTransientError)

S = BerufenetStatus
TIER_STATUS = {
    AliasTier.MATCH: S.EXACT,
    AliasTier.UNANIMOUS: S.ALIAS_UNANIMOUS,
    AliasTier.MAJORITY: S.ALIAS_MAJORITY,
}
MAX_ERROR_CHARS = 1000


# -- inputs -------------------------------------------------------------------------------------------------


@dataclass
class TitleGroup:
    """All postings of a run that share one cleaned title (`key` = its `title_key`).

    Postings whose title cleans to nothing get a group of their own with key "" (only their own
    `beruf` label can place them).
    """

    key: str
    title: str
    posting_ids: list[int] = field(default_factory=list)
    labels: Counter[str] = field(default_factory=Counter)


class TitleCleaner:
    """`clean_job_title` + `title_key` with a cache: a partition repeats the same raw titles many times."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[str, str]] = {}

    def __call__(self, raw: str | None, city: str | None = None) -> tuple[str, str]:
        """(cleaned display title, lookup key); both "" when nothing job-like is left.

        The posting's own city is a known place name, so a trailing "- <city>" is removed even when the
        city is too small for the cleaner's built-in list.
        """
        cache_key = (raw or "", city or "")
        hit = self._cache.get(cache_key)
        if hit is None:
            text = clean_job_title(cache_key[0], places=(city,) if city else ())
            key = title_key(text) if text else ""
            hit = self._cache[cache_key] = (text, key) if key else ("", "")
        return hit


def group_by_title(postings: Iterable[PostingTitle], cleaner: TitleCleaner | None = None) -> list[TitleGroup]:
    """Distinct cleaned titles, most frequent first (ties by key, for a stable order)."""
    clean = cleaner or TitleCleaner()
    groups: dict[str, TitleGroup] = {}
    untitled: list[TitleGroup] = []
    for posting in postings:
        text, key = clean(posting.title, posting.city)
        if not key:
            group = TitleGroup("", "", [posting.posting_id])
            if posting.beruf and posting.beruf.strip():
                group.labels[posting.beruf.strip()] += 1
            untitled.append(group)
            continue
        if key not in groups:
            groups[key] = TitleGroup(key, text)
        group = groups[key]
        group.posting_ids.append(posting.posting_id)
        if posting.beruf and posting.beruf.strip():
            group.labels[posting.beruf.strip()] += 1
    ordered = sorted(groups.values(), key=lambda g: (-len(g.posting_ids), g.key))
    return ordered + untitled


# -- results ------------------------------------------------------------------------------------------------


@dataclass
class TitleResult:
    group: TitleGroup
    status: BerufenetStatus
    profession_id: str | None = None
    score: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    error: str | None = None
    decided_by: str | None = None  # the model behind an embedding or LLM decision
    remembered: bool = False  # settled from the learned-alias store or a remembered failure

    @property
    def learnable(self) -> bool:
        return self.status in LEARNABLE and self.profession_id is not None and bool(self.group.key)


class MappingSources(Protocol):
    """Lookups the cheap stages need; the warehouse and the benchmark each provide one."""

    def aliases(self, keys: Sequence[str]) -> Mapping[str, Sequence[str]]: ...

    def learned(self, keys: Sequence[str]) -> Mapping[str, LearnedAlias]: ...

    def known_failures(self, keys: Sequence[str], fingerprint: str) -> Mapping[str, KnownFailure]: ...


class Verifier(Protocol):
    model: str

    def verify(
        self, title: str, candidates: Sequence[Candidate], professions: Mapping[str, Any]
    ) -> Choice: ...


@dataclass(frozen=True)
class EmbeddingBackend:
    encoder: TextEncoder
    catalog: CatalogMatrix


@dataclass(frozen=True)
class MappingSettings:
    thresholds: MatchThresholds
    top_k: int = 5
    llm_verify: bool = True
    encode_batch: int = 256
    llm_workers: int = 2
    llm_chunk: int = 20  # LLM results handed to the sink together (one transaction)


@dataclass
class MappingReport:
    results: list[TitleResult] = field(default_factory=list)
    # Per stage; float seconds, which Counter's int values do not type.
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    encoded_titles: int = 0
    encode_calls: int = 0
    llm_calls: int = 0
    llm_metrics: list[Any] = field(default_factory=list)
    llm_problem: str | None = None  # why the uncertain band was not verified
    embedding_used: bool = False

    def titles_by_status(self) -> Counter[str]:
        return Counter(str(r.status) for r in self.results)

    def postings_by_status(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for r in self.results:
            counts[str(r.status)] += len(r.group.posting_ids)
        return counts

    def top_scores(self) -> list[float]:
        """Top-1 embedding score of every title that reached the embedding stage in this run."""
        return [r.candidates[0].score for r in self.results if r.candidates]


class _NotAttempted(Exception):
    """A band title skipped because an earlier call found the server gone."""


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# -- the pipeline -------------------------------------------------------------------------------------------


class TitleMapper:
    """Runs the stages over title groups and hands results to `sink` as soon as a stage settles them.

    `embedding` and `verifier` are factories called at most once, and only when some title needs them:
    a run that resolves everything by lookup never loads a model, and Ollama is only preflighted when
    there is an uncertain band. `verifier` None with `llm_verify` on means no LLM is configured
    (`verifier_problem` says why); a factory raising `OllamaError` means it is not available. Either
    way the band ends as `llm_unavailable` with the reason, never silently accepted.
    """

    def __init__(
        self,
        catalog: CatalogSnapshot,
        sources: MappingSources,
        settings: MappingSettings,
        *,
        fingerprint: str = "",
        embedding: Callable[[], EmbeddingBackend] | None = None,
        verifier: Callable[[], Verifier] | None = None,
        verifier_problem: str | None = None,
        sink: Callable[[list[TitleResult]], None] | None = None,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.catalog = catalog
        self.sources = sources
        self.settings = settings
        self.fingerprint = fingerprint
        self.embedding = embedding
        self.verifier = verifier
        self.verifier_problem = verifier_problem
        self.sink = sink
        self.log = log

    # -- helpers ---------------------------------------------------------------------------------------

    def _emit(self, report: MappingReport, results: list[TitleResult]) -> None:
        if not results:
            return
        report.results.extend(results)
        if self.sink is not None:
            self.sink(results)

    def _resolve(self, ids: Sequence[str]) -> AliasResolution:
        return resolve_candidates(ids, self.catalog.professions)

    # -- stages ----------------------------------------------------------------------------------------

    def _lookup_stages(self, groups: list[TitleGroup], report: MappingReport) -> list[TitleGroup]:
        """Stages 1 and 2: one alias query for every label and title key of the run."""
        label_keys: dict[str, list[str]] = {}
        for group in groups:
            for label in group.labels:
                if label not in label_keys:
                    keys = [title_key(label), title_key(clean_job_title(label))]
                    label_keys[label] = list(dict.fromkeys(k for k in keys if k))
        wanted = {g.key for g in groups if g.key} | {k for keys in label_keys.values() for k in keys}
        hits = self.sources.aliases(sorted(wanted))
        settled: list[TitleResult] = []
        remaining: list[TitleGroup] = []
        for group in groups:
            result = None
            for label, _count in group.labels.most_common():
                for key in label_keys[label]:
                    hit = self._resolve(hits.get(key, ()))
                    if hit.profession_id is not None:
                        result = TitleResult(group, S.BERUF_LABEL, hit.profession_id, hit.score)
                        break
                if result is not None:
                    break
            if result is None and group.key:
                hit = self._resolve(hits.get(group.key, ()))
                if hit.profession_id is not None:
                    result = TitleResult(group, TIER_STATUS[hit.tier], hit.profession_id, hit.score)
            if result is None and not group.key:
                result = TitleResult(group, S.NO_TITLE)
            if result is None:
                remaining.append(group)
            else:
                settled.append(result)
        self._emit(report, settled)
        return remaining

    def _memory_stage(self, groups: list[TitleGroup], report: MappingReport) -> list[TitleGroup]:
        """Stage 3: titles resolved (or settled as failures) by an earlier run."""
        keys = [g.key for g in groups]
        learned = self.sources.learned(keys) if keys else {}
        failures = self.sources.known_failures(keys, self.fingerprint) if keys else {}
        settled: list[TitleResult] = []
        remaining: list[TitleGroup] = []
        for group in groups:
            alias = learned.get(group.key)
            known = failures.get(group.key)
            if alias is not None and alias.profession_id in self.catalog.professions:
                settled.append(TitleResult(group, S.LEARNED, alias.profession_id, alias.score, remembered=True))
            elif known is not None:
                settled.append(
                    TitleResult(group, known.status, None, known.score, list(known.candidates), remembered=True)
                )
            else:
                remaining.append(group)
        self._emit(report, settled)
        return remaining

    def _embedding_stage(self, groups: list[TitleGroup], report: MappingReport) -> list[TitleResult]:
        """Stage 4: returns the uncertain band; everything else is emitted."""
        if not groups:
            return []
        if self.embedding is None:
            raise RuntimeError("titles need the embedding stage but no embedding backend was given")
        backend = self.embedding()
        report.embedding_used = True
        model = backend.encoder.model_id
        th = self.settings.thresholds
        band: list[TitleResult] = []
        step = max(1, self.settings.encode_batch)
        progress = Progress("berufenet embedding", len(groups), self.log)
        for start in range(0, len(groups), step):
            batch = groups[start : start + step]
            t0 = time.monotonic()
            vectors = np.asarray(backend.encoder.encode([g.title for g in batch]), dtype=np.float32)
            report.seconds["encode"] += time.monotonic() - t0
            report.encode_calls += 1
            report.encoded_titles += len(batch)
            if vectors.ndim != 2 or vectors.shape[0] != len(batch):
                raise ValueError(f"{model} returned shape {vectors.shape} for {len(batch)} titles")
            ok = [usable_vector(v) for v in vectors]
            t0 = time.monotonic()
            ranked = rank_candidates(vectors[np.array(ok, dtype=bool)], backend.catalog, self.settings.top_k)
            report.seconds["search"] += time.monotonic() - t0
            settled: list[TitleResult] = []
            it = iter(ranked)
            for group, usable in zip(batch, ok, strict=True):
                if not usable:
                    settled.append(TitleResult(group, S.ERROR, error=f"{model} returned an unusable vector"))
                    continue
                cands = next(it)
                result = self._decide(group, cands, th, model)
                if result is None:
                    # Provisional status; the LLM stage decides the final one.
                    band.append(TitleResult(group, S.EMBEDDING_UNVERIFIED, None, cands[0].score, cands))
                else:
                    settled.append(result)
            self._emit(report, settled)
            progress.step(len(batch))
        return band

    def _decide(
        self, group: TitleGroup, cands: list[Candidate], th: MatchThresholds, model: str
    ) -> TitleResult | None:
        """The threshold rule; None means "uncertain band"."""
        if not cands:
            return TitleResult(group, S.NO_MATCH)
        best = cands[0]
        if best.score < th.verify:
            return TitleResult(group, S.NO_MATCH, None, best.score, cands)
        if best.score >= th.accept and not self._tied(cands):
            return TitleResult(group, S.EMBEDDING_HIGH, best.profession_id, best.score, cands, decided_by=model)
        return None

    def _tied(self, cands: list[Candidate]) -> bool:
        """Two different occupations with the same top score (the same name in two KldB codes): the
        embedding cannot choose, so the title goes to the LLM instead of to whichever sorted first."""
        if len(cands) < 2 or cands[1].score < cands[0].score - 1e-6:
            return False
        profs = self.catalog.professions
        return profs[cands[0].profession_id].kldb != profs[cands[1].profession_id].kldb

    def _llm_stage(self, band: list[TitleResult], report: MappingReport) -> None:
        """Stage 5: the uncertain band, verified by the LLM or given a status that says why not."""
        if not band:
            return
        if not self.settings.llm_verify:
            for r in band:
                r.status = S.EMBEDDING_UNVERIFIED
            self._emit(report, band)
            return
        verifier: Verifier | None = None
        problem = self.verifier_problem or "no LLM is configured for verification"
        if self.verifier is not None:
            try:
                verifier = self.verifier()
            except OllamaError as exc:  # the preflight: server down or model not pulled
                problem = str(exc)
        if verifier is None:
            report.llm_problem = problem
            for r in band:
                r.status, r.error = S.LLM_UNAVAILABLE, _short(problem)
            self._emit(report, band)
            return
        professions = self.catalog.professions
        progress = Progress("berufenet llm verify", len(band), self.log)
        pending: list[TitleResult] = []
        stop: str | None = None
        t0 = time.monotonic()
        gone = threading.Event()  # set by the first worker that finds the server gone

        def call(result: TitleResult) -> Choice:
            if gone.is_set():
                raise _NotAttempted
            try:
                return verifier.verify(result.group.title, result.candidates, professions)
            except SERVER_FAILURES:
                gone.set()
                raise

        def take(result: TitleResult) -> None:
            nonlocal pending
            pending.append(result)
            progress.step()
            if len(pending) >= self.settings.llm_chunk:
                self._emit(report, pending)
                pending = []

        with Bounded(call, band, workers=self.settings.llm_workers, name="berufenet-llm") as run:
            for done in run:
                result = done.item
                try:
                    choice = done.result()
                except SERVER_FAILURES as exc:
                    # The server is gone, sick (timeouts / 5xx after retries) or the model was removed:
                    # every further call would likely fail the same way, so the band is not attempted.
                    report.llm_metrics += list(exc.metrics)
                    stop = stop or str(exc)
                    result.status, result.error = S.LLM_UNAVAILABLE, _short(str(exc))
                    run.stop()
                except OllamaError as exc:
                    report.llm_metrics += list(exc.metrics)
                    report.llm_calls += len(exc.metrics)
                    reason = getattr(exc, "reason", None)
                    result.status = S.ERROR
                    result.error = _short(f"llm verify: {type(exc).__name__}" + (f" ({reason})" if reason else "")
                                          + f": {exc}")
                except (CancelledError, _NotAttempted):  # not started because the server went away
                    result.status, result.error = S.LLM_UNAVAILABLE, _short(stop or "not verified")
                else:
                    report.llm_metrics += choice.metrics
                    report.llm_calls += len(choice.metrics)
                    if choice.profession_id is None:
                        result.status = S.LLM_REJECTED
                    else:
                        result.status = S.LLM_VERIFIED
                        result.profession_id = choice.profession_id
                        result.score = next(
                            (c.score for c in result.candidates if c.profession_id == choice.profession_id),
                            result.score,
                        )
                    result.decided_by = verifier.model
                take(result)
        for result in run.untaken():  # never submitted: the server went away first
            result.status, result.error = S.LLM_UNAVAILABLE, _short(stop or "not verified")
            take(result)
        self._emit(report, pending)
        if stop is not None:
            report.llm_problem = stop
        report.seconds["llm"] += time.monotonic() - t0

    # -- entry point -----------------------------------------------------------------------------------

    def run(self, groups: list[TitleGroup]) -> MappingReport:
        report = MappingReport()
        t0 = time.monotonic()
        remaining = self._lookup_stages(groups, report)
        report.seconds["lookup"] += time.monotonic() - t0
        t0 = time.monotonic()
        remaining = self._memory_stage(remaining, report)
        report.seconds["memory"] += time.monotonic() - t0
        t0 = time.monotonic()
        band = self._embedding_stage(remaining, report)
        report.seconds["embedding"] += time.monotonic() - t0
        self._llm_stage(band, report)
        return report


# -- in-memory sources (benchmark, tests of the pure pipeline) -------------------------------------------


@dataclass
class InMemorySources:
    """`MappingSources` over plain dicts: the alias index, learned aliases, remembered failures."""

    alias_index: Mapping[str, Sequence[str]]
    learned_aliases: dict[str, LearnedAlias] = field(default_factory=dict)
    failures: dict[str, tuple[str, KnownFailure]] = field(default_factory=dict)  # key -> (fingerprint, ...)

    def aliases(self, keys: Sequence[str]) -> Mapping[str, Sequence[str]]:
        return {k: self.alias_index[k] for k in keys if k in self.alias_index}

    def learned(self, keys: Sequence[str]) -> Mapping[str, LearnedAlias]:
        return {k: self.learned_aliases[k] for k in keys if k in self.learned_aliases}

    def known_failures(self, keys: Sequence[str], fingerprint: str) -> Mapping[str, KnownFailure]:
        out = {}
        for k in keys:
            entry = self.failures.get(k)
            if entry is not None and entry[0] == fingerprint:
                out[k] = entry[1]
        return out

    def remember(self, results: Iterable[TitleResult], fingerprint: str) -> None:
        """What the warehouse sink stores, for a second in-memory run."""
        from ty_pipeline.domain.berufenet_status import SETTLED_FAILURES

        for r in results:
            if r.learnable and r.profession_id:
                self.learned_aliases[r.group.key] = LearnedAlias(r.group.key, r.profession_id, str(r.status), r.score)
            elif r.status in SETTLED_FAILURES and r.group.key:
                self.failures[r.group.key] = (
                    fingerprint, KnownFailure(r.group.key, r.status, r.score, tuple(r.candidates))
                )
