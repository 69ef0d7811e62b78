"""One whole night over loopback fakes: the nightly job fills every contract column of `postings_enriched`
and the day's demand snapshot, every check runs, and the new-fetch sensor then has nothing to request.

Deutsche Bank (the default LLM scope) and Jobsuche fakes, the scripted Ollama fake of the LLM tests,
the seed catalog and a trigram encoder (the real model is exercised in the embedding and Berufenet tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.automation.jobs import NIGHTLY_JOB_NAME
from ty_pipeline.definitions import build_defs
from ty_pipeline.partitions import berlin_today
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
    with FakeDeutscheBank() as db, FakeOllama(responder=NightLlm()) as ollama, dg.instance_for_test() as instance:
        for n, title in enumerate(["Softwareentwickler (m/w/d)", "Bankkaufmann (m/w/d)"]):
            db.add(make_db_item(f"9000{n}", title, published=day, city="Frankfurt am Main", subdivision="Hessen"),
                   html=DESCRIPTION)
        resources = {
            **resources_for(url, db_url=db.base_url, sources="deutsche_bank"),
            "embedder": fake_embedder(),
            "ollama": FastOllamaResource(host=ollama.base_url, read_timeout_s=5.0, max_retries=1),
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

        # The night fetched and enriched in one run: the sensor must not ask for that work again.
        sensor = night.get_sensor_def("new_postings_sensor")
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=night))
        assert not tick.run_requests
        assert "already enriched" in (tick.skip_message or "")
