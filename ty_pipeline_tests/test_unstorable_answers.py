"""BERUFENET records and LLM answers carrying bytes a warehouse cannot store (NUL, lone surrogates, C0
controls) or should not store verbatim (HTML entities): cleaned where they are parsed, and a value with
nothing left after cleaning is a reported failure, never a placeholder. The rest of the batch is stored.

Real HTTP to the loopback fakes (BERUFENET, Ollama), real SQLite and PostgreSQL warehouses. A NUL fails
a PostgreSQL insert ("A string literal cannot contain NUL"); a lone surrogate fails both backends (it has
no UTF-8 encoding), so without the cleaning these runs lose rows or fail on either backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.berufenet_catalog import berufenet_catalog
from ty_pipeline.domain.summary_layout import SummaryFields, render_summary
from ty_pipeline.domain.titles import clean_job_title, title_key
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.profession_catalog import ProfessionCatalogResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.berufenet_store import aliases_for_keys
from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.schema import berufenet_aliases, skill_keyword_items
from ty_pipeline.warehouse.schema import berufenet_catalog as catalog_table
from ty_pipeline_tests.berufenet_fakes import fake_embedder
from ty_pipeline_tests.fakes.berufenet_server import FakeBeruf, FakeBerufenet, numbered_professions
from ty_pipeline_tests.fakes.http_base import Response
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.test_llm_assets import (
    ALL,
    DAY,
    FIXTURES,
    ScriptedLlm,
    add_posting,
    enriched,
    facts,
    meta,
    posting_of,
    rows,
    run,
    schema_of,
    summary_fields,
    title_of,
)

# Everything that must never reach a table: C0 controls except tab and newline, DEL, C1, surrogates.
FORBIDDEN = {chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}
LLM_TABLES = ("posting_summaries", "skill_keywords", "skill_keyword_items", "ihl_scores")


def stored_strings(engine: sa.Engine, *tables: str) -> list[str]:
    with engine.connect() as conn:
        return [v for table in tables
                for r in conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed table names
                for v in r._mapping.values() if isinstance(v, str)]


def assert_all_storable(engine: sa.Engine, *tables: str) -> None:
    strings = stored_strings(engine, *tables)
    assert strings
    bad = [s for s in strings if set(s) & FORBIDDEN]
    assert not bad, bad[:3]


@pytest.fixture
def llm() -> ScriptedLlm:
    return ScriptedLlm()


@pytest.fixture
def fake(llm: ScriptedLlm) -> Iterator[FakeOllama]:
    with FakeOllama(responder=llm, latency_s=0.01) as server:
        yield server


# -- LLM answers ----------------------------------------------------------------------------------------


def dirty_answer(llm: ScriptedLlm, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a careful model answers, with a NUL, a lone surrogate, C0 controls and entities in every kind
    of stored text: summary fields, grader reasons, skill names, IHL reasoning, flags and evidence."""
    kind = schema_of(body)
    answer = llm.answer(model, body)
    if kind == "SummaryFields":
        answer["role"] = answer["role"].replace(" ", "\u0000 ", 1) + "\u0007"
        answer["company"] = "Deutsche\ud800 Bank &amp; Co\u001b"
        answer["responsibilities"][0] = "Advise clients\u0000 on R&amp;D\u0001 budgets"
    elif kind == "Grade":
        answer = {"verdict": "PASS", "reasons": ["Accurate\u0000 &amp; complete\ud800", "\u0000\u0001"]}
    elif kind == "SkillList":
        answer["skills"] += [
            {"name": "CO\u0000BOL\u0007", "importance": "essential"},
            {"name": "R&amp;D\ud800", "importance": "critical"},
            {"name": "\u0000\u0001\ud800", "importance": "important"},  # nothing left: dropped, not stored
        ]
    elif kind in ("AnalystOutput", "SkepticOutput"):
        answer["reasoning"] = "Ordinary duties\u0000.\nThe **team** &amp; the tools\ud800 are common\u001b."
    elif kind == "HRExpertOutput":
        answer["reasoning"] = "Both sides agree\u0000.\n- ordinary **requirements** &amp; tools\u0008"
        answer["red_flags"] = [{"flag": "Narrow\u0000 client group", "evidence": "Heil&amp;berufe\ud800",
                                "severity": "LOW"}]
    return answer


def answer_dirty_for(llm: ScriptedLlm, title: str) -> None:
    """The posting titled `title` gets `dirty_answer`s, every other posting clean ones."""

    def respond(model: str, body: dict[str, Any]) -> dict[str, Any]:
        if facts(posting_of(body)).get("Title") == title:
            return dirty_answer(llm, model, body)
        return llm.answer(model, body)

    llm.respond = respond  # type: ignore[attr-defined]


def test_nul_surrogates_controls_and_entities_in_llm_answers_are_stored_cleaned(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, llm: ScriptedLlm
) -> None:
    dirty = add_posting(engine, fixtures_dir, FIXTURES[0])
    clean = add_posting(engine, fixtures_dir, FIXTURES[1], published=DAY - timedelta(days=1))
    answer_dirty_for(llm, title_of(engine, dirty))

    result = run(ALL, warehouse_url, fake.base_url)

    assert_all_storable(engine, *LLM_TABLES)
    for asset in ("posting_summaries", "skill_keywords", "ihl_scores"):
        assert meta(result, asset)["failed"] == 0
    statuses = {asset: {pid: r["status"] for pid, r in rows(engine, asset).items()}
                for asset in ("posting_summaries", "skill_keywords", "ihl_scores")}
    assert statuses == {"posting_summaries": {dirty: "passed", clean: "passed"},
                        "skill_keywords": {dirty: "ok", clean: "ok"}, "ihl_scores": {dirty: "ok", clean: "ok"}}

    # Summary: the fields are cleaned where the answer is parsed, entities decoded once, the layout kept.
    summary = enriched(engine)[dirty]["summary"]
    role = title_of(engine, dirty)
    assert f"**Role:** {role}\n" in summary
    assert "**Company:** Deutsche Bank & Co\n" in summary
    assert "- Advise clients on R&D budgets\n" in summary
    grades = json.loads(rows(engine, "posting_summaries")[dirty]["grades_json"])
    # A reason with nothing left is not kept as an empty string.
    assert {tuple(g["reasons"]) for g in grades[0]["grades"]} == {("Accurate & complete",)}

    # Skills: cleaned names, and a name with nothing left is not stored at all.
    skills = json.loads(enriched(engine)[dirty]["skill_keywords"])
    assert {"COBOL", "R&D"} <= set(skills) and "" not in skills
    with engine.connect() as conn:
        items = conn.execute(sa.select(skill_keyword_items.c.skill).where(skill_keyword_items.c.posting_id == dirty)
                             .order_by(skill_keyword_items.c.rank)).scalars().all()
    assert items == skills

    # IHL: free text keeps its line breaks and markdown; only the junk is gone.
    ihl = rows(engine, "ihl_scores")[dirty]
    details = json.loads(ihl["details_json"])
    assert details["analyst"]["reasoning"] == "Ordinary duties.\nThe **team** & the tools are common."
    assert details["hr_expert"]["reasoning"] == "Both sides agree.\n- ordinary **requirements** & tools"
    assert json.loads(ihl["red_flags_json"]) == [
        {"flag": "Narrow client group", "evidence": "Heil&berufe", "severity": "LOW"}]

    # The clean posting is stored exactly as without the dirty neighbour.
    assert enriched(engine)[clean]["summary"] == render_summary(SummaryFields(**summary_fields(
        posting_of(next(r.json() for r in fake.chat_calls()
                        if facts(posting_of(r.json()))["Title"] == title_of(engine, clean))))))


def junk_answer(llm: ScriptedLlm, model: str, body: dict[str, Any]) -> dict[str, Any] | Response:
    """Answers whose required text is nothing but a NUL, controls and a surrogate: empty once cleaned."""
    kind = schema_of(body)
    answer = llm.answer(model, body)
    if kind == "SummaryFields":
        answer["role"] = "\u0000\u0007\ud800"
    elif kind == "SkillList":
        answer["skills"] = [{"name": "\u0000\u0001", "importance": "essential"},
                            {"name": "\ud800\u001b", "importance": "important"}]
    elif kind == "AnalystOutput":
        answer["reasoning"] = "\u0000\u0008\ud800"
    return answer


def test_an_answer_with_nothing_left_after_cleaning_is_a_reported_failure_and_the_rest_is_stored(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, llm: ScriptedLlm
) -> None:
    junk = add_posting(engine, fixtures_dir, FIXTURES[0])
    refused = add_posting(engine, fixtures_dir, FIXTURES[1], published=DAY - timedelta(days=1))
    clean = add_posting(engine, fixtures_dir, FIXTURES[2], published=DAY - timedelta(days=2))
    junk_title, refused_title = title_of(engine, junk), title_of(engine, refused)

    def respond(model: str, body: dict[str, Any]) -> dict[str, Any] | Response:
        title = facts(posting_of(body)).get("Title")
        if title == junk_title:
            return junk_answer(llm, model, body)
        if title == refused_title and schema_of(body) == "SkillList":
            # The server's own error text goes into the `error` column: it must be storable too.
            return Response.json_body({"error": "invalid\u0000 option\ud800 \u0007num_ctx"}, status=400)
        return llm.answer(model, body)

    llm.respond = respond  # type: ignore[attr-defined]
    result = run(ALL, warehouse_url, fake.base_url)

    assert_all_storable(engine, *LLM_TABLES)
    assert [meta(result, a)["failed"] for a in ("posting_summaries", "skill_keywords", "ihl_scores")] == [1, 2, 1]
    summary, skills, ihl = (rows(engine, a) for a in ("posting_summaries", "skill_keywords", "ihl_scores"))
    # Each junk answer got its corrective retry, then was recorded as a failure with its reason.
    assert summary[junk]["status"] == "llm_error" and "role" in summary[junk]["error"]
    assert skills[junk]["status"] == "llm_error" and "no usable skill name" in skills[junk]["error"]
    assert ihl[junk]["status"] == "llm_error" and "reasoning: empty" in ihl[junk]["error"]
    assert (summary[junk]["summary"], skills[junk]["skills_json"], ihl[junk]["ihl_score"]) == (None, None, None)
    assert skills[refused]["status"] == "llm_error"
    assert "invalid option num_ctx" in skills[refused]["error"]
    with engine.connect() as conn:
        item_owners = set(conn.execute(sa.select(skill_keyword_items.c.posting_id)).scalars())
    assert item_owners == {clean}
    # Everything else was stored.
    view = enriched(engine)
    assert all(view[clean][c] is not None for c in ("summary", "skill_keywords", "ihl_score"))
    assert view[refused]["summary"] is not None and view[refused]["ihl_score"] is not None


# -- BERUFENET records ----------------------------------------------------------------------------------


def test_berufenet_names_are_stored_cleaned_and_a_name_with_nothing_left_is_counted_not_stored(
    warehouse_url: str,
) -> None:
    professions = [
        *numbered_professions(5),
        FakeBeruf(40001, "Fach\u0000kraft\u0007 f\u00fcr Lager&amp;logistik\ud800", "B 51312"),
        FakeBeruf(40002, "\u0000\u0001\ud800\u001b", "B 28212"),
        FakeBeruf(40003, "Hafenlotse/-lotsin", "B 5231\u00002"),
    ]
    with FakeBerufenet(professions) as fake:
        result = dg.materialize(
            [berufenet_catalog],
            resources={"warehouse": WarehouseResource(url=warehouse_url), "embedder": fake_embedder(),
                       "profession_catalog": ProfessionCatalogResource(kldb_csv="seed", berufenet_api_url=fake.base_url),
                       "ollama": OllamaResource(host="http://127.0.0.1:9", max_retries=0)},
        )
    assert result.success
    meta_ = {k: v.value for k, v in result.asset_materializations_for_node("berufenet_catalog")[0].metadata.items()}
    assert (meta_["berufenet_fetched"], meta_["entries_berufenet"]) == (8, 6)
    assert (meta_["berufenet_skipped_no_name"], meta_["berufenet_skipped_no_kldb"]) == (1, 1)

    engine = get_engine(warehouse_url)
    assert_all_storable(engine, "berufenet_catalog", "berufenet_aliases")
    with engine.connect() as conn:
        names = dict(conn.execute(sa.select(catalog_table.c.profession_id, catalog_table.c.name)
                                  .where(catalog_table.c.source == "berufenet")).all())
        alias_ids = set(conn.execute(sa.select(berufenet_aliases.c.profession_id)).scalars())
    assert names["bn-40001"] == "Fachkraft für Lager&logistik"
    assert "bn-40002" not in names and "bn-40003" not in names and len(names) == 6
    # The cleaned name is what titles resolve to.
    key = title_key(clean_job_title("Fachkraft für Lager&logistik (m/w/d)"))
    assert aliases_for_keys(engine, [key]) == {key: ["bn-40001"]} and "bn-40001" in alias_ids
