"""One whole night over loopback fakes: the nightly job fills every contract column of `postings_enriched`
and the day's demand snapshot, every check runs, and the new-fetch sensor then has nothing to request.

Deutsche Bank (the default LLM scope) and Jobsuche fakes, the scripted Ollama fake of the LLM tests,
the seed catalog and a trigram encoder (the real model is exercised in the embedding and Berufenet tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.assets.descriptions import job_descriptions
from ty_pipeline.assets.postings import postings
from ty_pipeline.automation.jobs import NIGHTLY_JOB_NAME
from ty_pipeline.definitions import build_defs
from ty_pipeline.domain.clock import berlin_today
from ty_pipeline.professions.catalog import SEED
from ty_pipeline.professions.llm import CandidateChoice
from ty_pipeline_tests.berufenet_fakes import fake_embedder
from ty_pipeline_tests.fakes.deutsche_bank_server import FakeDeutscheBank, make_db_item
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.helpers import resources_for
from ty_pipeline_tests.test_llm_assets import FastOllamaResource, ScriptedLlm, schema_of

DESCRIPTION = (
    "<h2>Ihre Aufgaben</h2><ul><li>Sie entwickeln Zahlungsverkehrsanwendungen in Java und Kotlin.</li>"
    "<li>Sie betreiben Datenstrecken mit Kafka und Spark.</li></ul><h2>Ihr Profil</h2><ul>"
    "<li>Studium der Informatik oder vergleichbare Ausbildung</li><li>Mehrjährige Erfahrung mit SQL</li>"
    "<li>Sehr gute Deutsch- und Englischkenntnisse</li></ul>"
)


DAILY_ASSETS = ("postings", "job_descriptions", "posting_summaries", "skill_keywords", "ihl_scores",
                "berufenet_mappings", "posting_embeddings", "demand_snapshots")


def night_check_keys(defs: dg.Definitions) -> set[dg.AssetCheckKey]:
    return set(defs.resolve_job_def(NIGHTLY_JOB_NAME).asset_layer.asset_graph.asset_check_keys)


class NightLlm(ScriptedLlm):
    """The LLM tests' scripted answers, plus 'first candidate' for the Berufenet verify step."""

    def __call__(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        if schema_of(body) == CandidateChoice.__name__:
            return {"choice": 1}
        return super().__call__(model, body)


def test_a_whole_night_fills_every_contract_column_and_the_sensor_then_skips(tmp_path: Path) -> None:
    day = berlin_today()
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    with FakeDeutscheBank() as db, FakeOllama(responder=NightLlm()) as ollama, \
            FakeOllama(responder=NightLlm()) as second, dg.instance_for_test() as instance:
        for n, title in enumerate(["Softwareentwickler (m/w/d)", "Bankkaufmann (m/w/d)"]):
            db.add(make_db_item(f"9000{n}", title, published=day, city="Frankfurt am Main", subdivision="Hessen"),
                   html=DESCRIPTION)
        resources = {
            **resources_for(url, db_url=db.base_url, sources="deutsche_bank"),
            "embedder": fake_embedder(),
            # Two LLM hosts: every LLM step of the night spreads its calls over both.
            "ollama": FastOllamaResource(host=ollama.base_url, hosts=f"{ollama.base_url}=2,{second.base_url}=2",
                                         read_timeout_s=5.0, max_retries=1),
        }
        night = build_defs(resources)
        assert dg.materialize([berufenet_catalog], resources=resources, instance=instance).success

        result = night.resolve_job_def(NIGHTLY_JOB_NAME).execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False
        )
        assert result.success, [e.event_specific_data for e in result.all_events if e.is_failure]
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert materialized == set(DAILY_ASSETS)
        evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
        failed = {k: e.metadata for k, e in evaluations.items() if not e.passed}
        assert not failed, failed
        # Every check of every daily asset ran in the night's run.
        assert {a for a, _ in evaluations} == set(DAILY_ASSETS)
        assert len(evaluations) == len(night_check_keys(night))

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT title, summary, skill_keywords, ihl_score, ihl_category, berufenet_id, kldb, "
                "qualification_level, berufenet_status, has_embedding FROM postings_enriched ORDER BY title"
            )).mappings().all()
            snapshot = conn.execute(sa.text(
                "SELECT state, domain_code, total_postings FROM demand_snapshots "
                "WHERE snapshot_date = :d AND berufenet_id IS NULL ORDER BY domain_code"
            ), {"d": day.isoformat()}).all()
        engine.dispose()
        assert len(rows) == 2
        for row in rows:
            assert row["summary"] and row["skill_keywords"].startswith("[") and row["ihl_score"] is not None
            assert row["ihl_category"] and row["berufenet_status"] and bool(row["has_embedding"]) is True
        by_title = {r["title"]: r for r in rows}
        assert by_title["Softwareentwickler (m/w/d)"]["kldb"] == "43414"
        assert by_title["Bankkaufmann (m/w/d)"]["kldb"] == "72112"
        assert [(s, d, n) for s, d, n in snapshot] == [("Hessen", "43", 1), ("Hessen", "72", 1)]

        assert ollama.chat_calls() and second.chat_calls()  # both hosts served the night

        # The night fetched and enriched in one run: the sensor must not ask for that work again.
        sensor = night.get_sensor_def("new_postings_sensor")
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=night))
        assert not tick.run_requests
        assert "already enriched" in (tick.skip_message or "")


def _cli(env: dict[str, str], select: str, day: str | None) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "ty_pipeline", "--select", select]
    if day:
        cmd += ["--partition", day]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _view(url: str, day: str) -> dict[str, dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT * FROM postings_enriched WHERE partition_date = :d"), {"d": day}).mappings().all()
    finally:
        engine.dispose()
    return {f"{r['source']}:{r['external_id']}": dict(r) for r in rows}


def test_the_issues_acceptance_commands_fill_the_view_from_the_command_line(
    warehouse_url: str, tmp_path: Path
) -> None:
    """As a user runs them: the sample source, `OLLAMA_HOST` at a server speaking Ollama's API, and the
    LLM and profession issues' `dagster asset materialize` commands, on SQLite and PostgreSQL."""
    import os
    import shutil
    from datetime import timedelta

    from ty_pipeline_tests.test_llm_assets import calls_by_posting

    day = (berlin_today() - timedelta(days=1)).isoformat()  # the newest sample day
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "deploy" / "quickstart" / "dagster.yaml", home)
    with FakeOllama(responder=NightLlm()) as ollama:
        env = {**os.environ, "DAGSTER_HOME": str(home), "TY_WAREHOUSE_URL": warehouse_url, "TY_SOURCES": "sample",
               "OLLAMA_HOST": ollama.base_url, "HF_HUB_OFFLINE": "1",
               "TY_KLDB_CSV": SEED}  # the seed catalog: embedding the full KldB directory takes minutes
        env.pop("TY_LLM_SOURCES", None)
        env.pop("TY_LLM_MAX_POSTINGS", None)
        # Ingestion's own command is the foundation's acceptance test; here it runs in-process to save time.
        sample = {**resources_for(warehouse_url, sources="sample"), "embedder": fake_embedder()}
        assert dg.materialize([postings, job_descriptions], partition_key=day, resources=sample).success
        view = _view(warehouse_url, day)
        in_scope = {k for k, r in view.items() if r["source"] == "deutsche_bank" and r["job_description"]}
        assert in_scope and len(view) > len(in_scope)  # Jobsuche postings are outside the default LLM scope

        _cli(env, "posting_summaries,skill_keywords,ihl_scores", day)
        view = _view(warehouse_url, day)
        for key in in_scope:
            row = view[key]
            assert row["summary"] and json.loads(row["skill_keywords"]) and 0 <= row["ihl_score"] <= 10, key
            assert row["ihl_category"] in {"GENUINE", "BORDERLINE", "COMPLIANCE_THEATER", "FAKE"}
        for key in view.keys() - in_scope:
            assert (view[key]["summary"], view[key]["skill_keywords"], view[key]["ihl_score"]) == (None, None, None)
        assert set(calls_by_posting(ollama).values()) == {7} and len(calls_by_posting(ollama)) == len(in_scope)

        # (That a second run makes no call for saved results is tested in-process in test_llm_assets.)

        _cli(env, "berufenet_catalog,berufenet_mappings,posting_embeddings,demand_snapshots", day)
    view = _view(warehouse_url, day)
    for key, row in view.items():
        assert row["berufenet_status"], key
        assert bool(row["has_embedding"]) is (len(row["summary"] or row["job_description"] or "") >= 150), key
    mapped = [r for r in view.values() if r["kldb"]]
    assert mapped and all(len(r["kldb"]) == 5 and r["qualification_level"] in (1, 2, 3, 4) and r["berufenet_id"]
                          for r in mapped)
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        snapshot = conn.execute(sa.text(
            "SELECT sum(total_postings) FROM demand_snapshots WHERE snapshot_date = :d AND berufenet_id IS NULL"
        ), {"d": day}).scalar_one()
    engine.dispose()
    assert snapshot and snapshot >= len({r["posting_id"] for r in mapped if r["state"]})


def test_the_llm_command_over_two_openai_compatible_hosts_enriches_every_posting_of_both_sources(
    tmp_path: Path,
) -> None:
    """Issue #11's acceptance command: `TY_LLM_BACKEND=openai TY_LLM_HOSTS=h1=..,h2=..` and
    `dagster asset materialize --select posting_summaries,skill_keywords,ihl_scores --partition D`. With
    hosts listed, the default scope is every source, so the sample's Jobsuche postings are enriched too."""
    import os
    import shutil
    from datetime import timedelta

    from ty_pipeline_tests.fakes.openai_server import FakeOpenAI

    day = (berlin_today() - timedelta(days=1)).isoformat()
    url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(Path(__file__).resolve().parents[1] / "deploy" / "quickstart" / "dagster.yaml", home)
    sample = {**resources_for(url, sources="sample"), "embedder": fake_embedder()}
    assert dg.materialize([postings, job_descriptions], partition_key=day, resources=sample).success
    with FakeOpenAI(responder=NightLlm()) as h1, FakeOpenAI(responder=NightLlm()) as h2:
        env = {**os.environ, "DAGSTER_HOME": str(home), "TY_WAREHOUSE_URL": url, "TY_SOURCES": "sample",
               "HF_HUB_OFFLINE": "1", "TY_LLM_BACKEND": "openai", "TY_LLM_HOSTS": f"{h1.base_url}=3,{h2.base_url}/v1=3",
               "OLLAMA_HOST": "http://127.0.0.1:9"}  # never asked: the host list wins
        for name in ("TY_LLM_SOURCES", "TY_LLM_MAX_POSTINGS", "TY_LLM_API_KEY"):
            env.pop(name, None)
        _cli(env, "posting_summaries,skill_keywords,ihl_scores", day)
        calls = len(h1.chat_calls()) + len(h2.chat_calls())
        assert h1.chat_calls() and h2.chat_calls()
        assert h1.max_overlap() <= 3 and h2.max_overlap() <= 3
    view = _view(url, day)
    in_scope = {k for k, r in view.items() if r["job_description"] and len(r["job_description"]) >= 100}
    assert {view[k]["source"] for k in in_scope} == {"arbeitsagentur", "deutsche_bank"}
    for key in in_scope:
        row = view[key]
        assert row["summary"] and json.loads(row["skill_keywords"]) and 0 <= row["ihl_score"] <= 10, key
    assert calls == 7 * len(in_scope)
