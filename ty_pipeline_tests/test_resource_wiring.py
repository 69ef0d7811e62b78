"""Endpoints wired from the environment survive run config, one Ollama configuration serves every
asset that can reach the GPU server, and no endpoint credential reaches a log, metadata or error.

Dagster replaces a resource's whole configuration when a run sets `resources.<name>.config`; the
endpoint used to be a constructor value, so a run that only tuned a timeout went to the default
server (issue: `read_timeout_s` reset `OLLAMA_HOST` to localhost, `page_delay_s` sent Jobsuche requests
to the real API). Each test wires the production resources (`definitions.build_resources`) from the
environment, sets one tuning knob in run config, and shows through a loopback fake that the
environment's endpoint is still the one called.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.assets.embeddings import posting_embeddings
from ty_pipeline.assets.llm_enrichment import llm_enrichment
from ty_pipeline.assets.postings import postings
from ty_pipeline.assets.profession_similarity import profession_similarity
from ty_pipeline.definitions import build_resources
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.schema import embeddings as embeddings_table
from ty_pipeline_tests.fakes.berufenet_server import FakeBeruf, FakeBerufenet
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank
from ty_pipeline_tests.fakes.jobsuche_server import FakeJobsuche
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.paths import KLDB_CSV
from ty_pipeline_tests.test_embeddings import add_posting as add_aa_posting
from ty_pipeline_tests.test_embeddings import german_text, set_description
from ty_pipeline_tests.test_llm_assets import DAY as LLM_DAY
from ty_pipeline_tests.test_llm_assets import add_posting as add_db_posting
from ty_pipeline_tests.test_postings_assets import DAY as FETCH_DAY
from ty_pipeline_tests.test_postings_assets import TODAY, add_aa, add_db, enriched

ENV_NAMES = ("OLLAMA_HOST", "TY_AA_BASE_URL", "TY_DB_BASE_URL", "TY_SOURCES", "TY_EMBED_BACKEND", "TY_EMBED_MODEL",
             "TY_KLDB_CSV", "TY_BERUFENET_API_URL", "TY_LLM_SOURCES", "TY_LLM_MAX_POSTINGS")
EMBED_MODEL = "bge-m3"
UNUSED = "http://127.0.0.1:9"  # the discard port: a request sent here fails at once


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, warehouse_url: str) -> pytest.MonkeyPatch:
    """A clean environment with the test warehouse; each test sets the endpoints it is about."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TY_WAREHOUSE_URL", warehouse_url)
    # Anything not under test points at the discard port, never at a real server.
    monkeypatch.setenv("OLLAMA_HOST", UNUSED)
    monkeypatch.setenv("TY_AA_BASE_URL", UNUSED)
    monkeypatch.setenv("TY_DB_BASE_URL", UNUSED)
    monkeypatch.setenv("TY_KLDB_CSV", "seed")  # the small catalog: these tests are about wiring, not size
    return monkeypatch


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


def materialize(assets: list[dg.AssetsDefinition], resources_config: dict[str, dict[str, Any]], *,
                partition_key: str | None = None, instance: dg.DagsterInstance | None = None,
                selection: list[str] | None = None,
                ) -> dg.ExecuteInProcessResult:
    """Production resources from the environment; run config sets only the given knobs."""
    return dg.materialize(
        assets, partition_key=partition_key, resources=build_resources(), raise_on_error=False, instance=instance,
        selection=selection,
        run_config={"resources": {name: {"config": cfg} for name, cfg in resources_config.items()}},
    )


def errors(result: dg.ExecuteInProcessResult) -> list[Any]:
    return [e.event_specific_data for e in result.all_events if e.is_failure]


def meta(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    mats = [m for e in result.get_asset_materialization_events()
            if (m := e.step_materialization_data.materialization).asset_key.path == [asset]]
    (mat,) = mats
    return {k: v.value for k, v in mat.metadata.items()}


# -- each resource keeps its environment endpoint under run config ----------------------------------------


def test_ollama_read_timeout_in_run_config_keeps_ollama_host(
    env: pytest.MonkeyPatch, warehouse_url: str, fixtures_dir: Path, ollama: FakeOllama
) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    add_db_posting(engine, fixtures_dir, "job44161")
    env.setenv("OLLAMA_HOST", ollama.base_url)
    result = materialize([llm_enrichment], {"ollama": {"read_timeout_s": 30.0}}, partition_key=LLM_DAY.isoformat(),
                         selection=["skill_keywords"])
    assert result.success, errors(result)
    assert len(ollama.chat_calls()) == 1
    assert meta(result, "skill_keywords")["processed"] == 1


def test_jobsuche_rate_in_run_config_keeps_ty_aa_base_url(env: pytest.MonkeyPatch, warehouse_url: str) -> None:
    with FakeJobsuche(today=TODAY) as aa:
        add_aa(aa, 1, "Berlin")
        env.setenv("TY_AA_BASE_URL", aa.base_url)
        env.setenv("TY_SOURCES", "arbeitsagentur")
        result = materialize([postings], {"jobsuche": {"requests_per_s": 500.0}}, partition_key=FETCH_DAY.isoformat())
        assert result.success, errors(result)
        assert aa.searches()
        sent = len(aa.requests)
    assert [k for k in enriched(warehouse_url)] == [("arbeitsagentur", "10001-1000000001-S")]
    # The run's rate is the one in force, every search page went through it, and the step says so.
    figures = meta(result, "postings")["requests_arbeitsagentur"]
    assert figures["configured_requests_per_s"] == 500.0
    assert figures["requests"] == sent


def test_deutsche_bank_rate_in_run_config_keeps_ty_db_base_url(env: pytest.MonkeyPatch, warehouse_url: str) -> None:
    with FakeDeutscheBank() as db:
        add_db(db, "70001")
        env.setenv("TY_DB_BASE_URL", db.base_url)
        env.setenv("TY_SOURCES", "deutsche_bank")
        result = materialize([postings], {"deutsche_bank": {"requests_per_s": 500.0, "max_in_flight": 1}},
                             partition_key=FETCH_DAY.isoformat())
        assert result.success, errors(result)
    assert [k for k in enriched(warehouse_url)] == [("deutsche_bank", "70001")]
    assert meta(result, "postings")["requests_deutsche_bank"]["configured_requests_per_s"] == 500.0


def test_embedder_batch_size_in_run_config_keeps_the_backend_model_and_ollama_host(
    env: pytest.MonkeyPatch, ollama: FakeOllama
) -> None:
    env.setenv("TY_EMBED_BACKEND", "ollama")
    env.setenv("TY_EMBED_MODEL", EMBED_MODEL)
    env.setenv("OLLAMA_HOST", ollama.base_url)
    result = materialize([berufenet_catalog], {"embedder": {"batch_size": 8}})
    assert result.success, errors(result)
    calls = ollama.embed_calls()
    assert calls and {c.json()["model"] for c in calls} == {EMBED_MODEL}
    assert meta(result, "berufenet_catalog")["embedding_model"] == f"ollama:{EMBED_MODEL}"


def kldb_excerpt(path: Path, rows: int = 60) -> Path:
    """The first rows of the official directory, whole CSV records (a valid, small KldB file)."""
    with open(KLDB_CSV, encoding="utf-8-sig", newline="") as src, open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        for i, row in enumerate(csv.reader(src, delimiter=";")):
            if i > rows:
                break
            writer.writerow(row)
    return path


def test_profession_catalog_workers_in_run_config_keep_ty_kldb_csv_and_the_berufenet_url(
    env: pytest.MonkeyPatch, ollama: FakeOllama, tmp_path: Path
) -> None:
    csv_path = kldb_excerpt(tmp_path / "kldb_excerpt.csv")
    env.setenv("TY_KLDB_CSV", str(csv_path))
    env.setenv("TY_EMBED_BACKEND", "ollama")
    env.setenv("TY_EMBED_MODEL", EMBED_MODEL)
    env.setenv("OLLAMA_HOST", ollama.base_url)
    with FakeBerufenet([FakeBeruf(27272, "Kampfschwimmer/in", "B 01104")]) as berufenet:
        api_url = berufenet.base_url
        env.setenv("TY_BERUFENET_API_URL", api_url)
        result = materialize([berufenet_catalog], {"profession_catalog": {"berufenet_workers": 1}})
        assert result.success, errors(result)
    m = meta(result, "berufenet_catalog")
    assert str(csv_path) in m["origin"] and api_url in m["origin"]
    assert m["entries_berufenet"] == 1 and m["entries_kldb"] > 0 and "entries_seed" not in m


# -- one Ollama client configuration and the pool for everything that reaches the GPU server --------------


def test_assets_that_can_reach_the_gpu_server_run_in_the_ollama_pool() -> None:
    for asset in (posting_embeddings, berufenet_catalog, profession_similarity):
        assert asset.node_def.pool == "ollama", asset.key


@pytest.mark.parametrize(("max_retries", "ok"), [(1, False), (2, True)])
def test_ollama_embeddings_use_the_ollama_resource_retries(
    env: pytest.MonkeyPatch, warehouse_url: str, ollama: FakeOllama, max_retries: int, ok: bool
) -> None:
    """Two busy answers: the `ollama` resource's retries decide, not a client of the embedder's own
    (which retried four times whatever the resource said)."""
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    set_description(engine, add_aa_posting(engine, "e1"), german_text(400))
    env.setenv("TY_EMBED_BACKEND", "ollama")
    env.setenv("TY_EMBED_MODEL", EMBED_MODEL)
    env.setenv("OLLAMA_HOST", ollama.base_url)
    ollama.fail_next(2, "503", endpoint="embed")
    result = materialize(
        [posting_embeddings], {"ollama": {"max_retries": max_retries, "read_timeout_s": 20.0}},
        partition_key=date(2026, 11, 18).isoformat(),
    )
    assert result.success is ok, errors(result)
    assert len(ollama.embed_calls()) == max_retries + 1
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(embeddings_table)).scalar_one()
    assert stored == (1 if ok else 0)


# -- credentials in endpoint URLs never reach logs, metadata or errors ------------------------------------

SECRET = "s3cretpw"
TOKEN = "t0kenvalue"


def with_credentials(url: str) -> str:
    """`http://127.0.0.1:PORT` with a user and password, as an operator may configure a proxy."""
    return url.replace("http://", f"http://operator:{SECRET}@", 1)


def everything_shown(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance,
                     caplog: pytest.LogCaptureFixture) -> str:
    """Event log (messages, failures with their causes, metadata) and the Python log of the run."""
    parts = [caplog.text]
    for record in instance.all_logs(result.run_id):
        parts.append(record.user_message or "")
        parts.append(repr(record.dagster_event.event_specific_data) if record.dagster_event else "")
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.to_string())
                error = error.cause
    for mat in result.get_asset_materialization_events():
        parts.append(repr(mat.materialization.metadata))
    return "\n".join(parts)


@pytest.mark.parametrize("fault", ["reset", "503", "refused"])
def test_ollama_host_credentials_are_never_shown(
    env: pytest.MonkeyPatch, warehouse_url: str, fixtures_dir: Path, ollama: FakeOllama,
    caplog: pytest.LogCaptureFixture, fault: str,
) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    add_db_posting(engine, fixtures_dir, "job44161")
    base = UNUSED if fault == "refused" else ollama.base_url
    env.setenv("OLLAMA_HOST", with_credentials(base))
    if fault != "refused":
        ollama.fail_next(100, fault, endpoint="chat")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize([llm_enrichment], {"ollama": {"max_retries": 1}}, partition_key=LLM_DAY.isoformat(),
                         selection=["skill_keywords"],
                         instance=instance)
    assert not result.success
    shown = everything_shown(result, instance, caplog)
    assert base in shown  # the operator still sees which server failed
    assert SECRET not in shown and "operator" not in shown


def test_job_api_credentials_are_never_shown(env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    env.setenv("TY_AA_BASE_URL", with_credentials(UNUSED))
    env.setenv("TY_DB_BASE_URL", with_credentials(UNUSED))
    env.setenv("TY_SOURCES", "arbeitsagentur,deutsche_bank")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(
        [postings],
        {"jobsuche": {"max_retries": 0}, "deutsche_bank": {"max_retries": 0}},
        partition_key=FETCH_DAY.isoformat(), instance=instance,
    )
    assert not result.success
    shown = everything_shown(result, instance, caplog)
    assert "Jobsuche search" in shown and "Deutsche Bank search" in shown and "127.0.0.1" in shown
    assert SECRET not in shown and "operator" not in shown


def test_catalog_url_credentials_and_tokens_are_never_shown(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Redaction, not retrying, is under test here: one attempt per step shows every message once.
    env.setenv("TY_STEP_MAX_RETRIES", "0")
    env.setenv("TY_KLDB_CSV", f"{with_credentials(UNUSED)}/kldb.csv?token={TOKEN}")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize([berufenet_catalog], {}, instance=instance)
    assert not result.success
    shown = everything_shown(result, instance, caplog)
    assert "TY_KLDB_CSV=http://127.0.0.1:9" in shown
    assert SECRET not in shown and TOKEN not in shown and "operator" not in shown

    env.setenv("TY_KLDB_CSV", "seed")
    env.setenv("TY_BERUFENET_API_URL", with_credentials(UNUSED))
    result = materialize([berufenet_catalog], {"profession_catalog": {"berufenet_workers": 1}}, instance=instance)
    assert not result.success
    shown = everything_shown(result, instance, caplog)
    assert "http://127.0.0.1:9" in shown and SECRET not in shown and "operator" not in shown
