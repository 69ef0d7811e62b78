"""The three LLM assets end to end: the real Ollama client over real HTTP to the loopback fake, real
warehouses (SQLite and PostgreSQL), real Deutsche Bank posting texts.

What a user would notice is asserted: which rows and values end up in `postings_enriched`, how many
model calls a posting costs (counted by the fake, not by our own metadata), that the two graders are
in flight at the same time (the fake's recorded intervals), that nothing invalid is ever saved, that a
dead server or a missing model stops a run before anything is written, and that a killed run resumes
without paying again for what it saved.
"""

from __future__ import annotations

import html
import json
import threading
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from ty_pipeline.assets.llm_common import LLM_ERRORS_CHECK, LlmRunConfig
from ty_pipeline.assets.llm_enrichment import llm_enrichment
from ty_pipeline.checks.llm_outputs import build_llm_output_checks
from ty_pipeline.clients.ollama import OllamaClient
from ty_pipeline.domain.description_status import DescriptionStatus
from ty_pipeline.domain.ihl import category_for_score
from ty_pipeline.domain.posting_record import PostingRecord, Source
from ty_pipeline.domain.summary_layout import SummaryFields, render_summary
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.ollama import OllamaResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.descriptions_store import DescriptionOutcome, PendingDescription, save_description
from ty_pipeline.warehouse.llm_results_store import saved_rows
from ty_pipeline.warehouse.postings_store import upsert_postings
from ty_pipeline.warehouse.schema import ihl_scores as ihl_table
from ty_pipeline.warehouse.schema import posting_summaries as summaries_table
from ty_pipeline.warehouse.schema import postings, skill_keyword_items
from ty_pipeline.warehouse.schema import skill_keywords as skills_table
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.fakes.openai_server import request_schema
from ty_pipeline_tests.helpers import UNUSED_URL

DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 22, 0)
QWEN = "qwen2.5:7b-instruct"
LLAMA = "llama3.1:8b"
FIXTURES = ["job44161", "job59386", "job62800", "job64727"]
VOCABULARY = ["Python", "SQL", "Excel", "IFRS", "UNIX", "Linux", "Vertrieb", "Verhandlungsgeschick",
              "Eigeninitiative", "Englisch", "Information Security", "Stakeholder", "Accounting", "Audit"]
# The three LLM assets are lanes of one multi-asset step; a test selects the lanes it runs by name.
posting_summaries, skill_keywords, ihl_scores = "posting_summaries", "skill_keywords", "ihl_scores"
LANE_CONFIG_KEYS = {"posting_summaries": "summaries", "skill_keywords": "skills", "ihl_scores": "ihl"}
SHARED_KEYS = set(LlmRunConfig.model_fields)
TABLES = {"posting_summaries": summaries_table, "skill_keywords": skills_table, "ihl_scores": ihl_table}
COMPARED = ("posting_id", "status", "summary", "fields_json", "grades_json", "models", "prompt_version",
            "input_hash", "attempts", "error")


# -- a scripted model that answers like a careful LLM, from the posting it is shown -----------------------


def _section(text: str, tag: str) -> str:
    start, end = f"<{tag}>\n", f"\n</{tag}>"
    assert start in text and end in text, f"<{tag}> missing from the prompt"
    return text.split(start, 1)[1].split(end, 1)[0]


def first_user_message(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def posting_of(body: dict[str, Any]) -> str:
    # The posting is in the shared first message (prompts/__init__.py, layout), not in the user message.
    return _section(body["messages"][0]["content"], "posting")


def is_improve(body: dict[str, Any]) -> bool:
    return first_user_message(body).startswith("You correct")


def schema_of(body: dict[str, Any]) -> str:
    """The answer schema's title, from Ollama's `format` or the OpenAI-compatible `response_format`."""
    return str((request_schema(body) or {}).get("title"))


def facts(posting: str) -> dict[str, str]:
    found = {}
    for line in posting.splitlines():
        label, sep, value = line.partition(": ")
        if sep and label in ("Title", "Employer", "Location"):
            found[label] = value
    return found


def summary_fields(posting: str, *, improved: bool = False) -> dict[str, Any]:
    f = facts(posting)
    role, place = f["Title"], f["Location"]
    suffix = " as the posting describes it" if improved else ""
    return {
        "role": role,
        "company": f["Employer"],
        "location": place,
        "job_id": None,
        "responsibilities": [f"Carry out the core duties of the {role} role{suffix}",
                             f"Work with the team in {place}",
                             "Report results to the line manager"],
        "requirements": ["Relevant degree or vocational training", "Experience in a comparable position",
                         "Good command of German"],
        "details": [],
    }


def ihl_score_for(posting: str) -> tuple[int, str]:
    """A self-contradicting expert for the Finanzberater posting: score 7 but verdict BORDERLINE."""
    return (7, "BORDERLINE") if "Finanzberater" in facts(posting)["Title"] else (2, "GENUINE")


class ScriptedLlm:
    """The fake's responder. `grade(model, summary) -> (verdict, reasons)` can be replaced per test."""

    def __init__(self) -> None:
        self.grade = lambda model, summary: ("PASS", [])

    def __call__(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        respond = getattr(self, "respond", None)
        if respond is not None:
            return respond(model, body)
        return self.answer(model, body)

    def answer(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        posting = posting_of(body)
        kind = schema_of(body)
        if kind == "SummaryFields":
            return summary_fields(posting, improved=is_improve(body))
        if kind == "Grade":
            verdict, reasons = self.grade(model, _section(first_user_message(body), "summary"))
            return {"verdict": verdict, "reasons": reasons}
        if kind == "SkillList":
            names = [v for v in VOCABULARY if v.lower() in posting.lower()] or ["Kommunikation"]
            items = [{"name": name, "importance": "important"} for name in names]
            # a model's usual noise: a bulleted, lower-cased duplicate rated higher
            items.append({"name": f"- {names[0].lower()}.", "importance": "essential"})
            return {"skills": items}
        if kind == "AnalystOutput":
            return {"analyst_verdict": "GENUINE", "suggested_ihl_score": 2, "red_flags": [],
                    "reasoning": f"Ordinary requirements for {facts(posting)['Title']}."}
        if kind == "SkepticOutput":
            return {"skeptic_verdict": "GENUINE", "suggested_ihl_score": 1, "counter_arguments": [],
                    "reasoning": "Clear duties and a named team suggest a real opening."}
        if kind == "HRExpertOutput":
            score, verdict = ihl_score_for(posting)
            return {"ihl_score": score, "verdict": verdict, "confidence": "MEDIUM",
                    "red_flags": [{"flag": "Narrow client group", "evidence": "Heilberufe", "severity": "LOW"}],
                    "candidate_pool_estimate": "LARGE (1000+)", "recommendation": "APPLY",
                    "reasoning": "Both sides agree the requirements are ordinary for the role."}
        raise AssertionError(f"unexpected schema {kind}")


# -- fixtures and set-up ----------------------------------------------------------------------------------


class FastOllamaResource(OllamaResource):
    """The production resource with millisecond backoff, so retries do not slow the suite down."""

    def client_for(self, url: str, slots: int, *, max_retries: int | None = None) -> OllamaClient:
        return OllamaClient(
            url, connect_timeout_s=self.connect_timeout_s, read_timeout_s=self.read_timeout_s,
            max_retries=self.max_retries if max_retries is None else max_retries, backoff_base_s=0.005, backoff_max_s=0.02, keep_alive=self.keep_alive,
            pool_size=max(self.pool_size, slots),
        )


@pytest.fixture
def llm() -> ScriptedLlm:
    return ScriptedLlm()


@pytest.fixture
def fake(llm: ScriptedLlm) -> Any:
    with FakeOllama(responder=llm, latency_s=0.02) as server:
        yield server


def fixture_posting(fixtures_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((fixtures_dir / "deutsche_bank_postings" / f"{name}.json").read_text("utf-8"))


def add_posting(
    engine: sa.Engine, fixtures_dir: Path, name: str, *, published: date = DAY, source: Source = Source.DEUTSCHE_BANK,
    description: str | None | bool = True,
) -> int:
    """A posting of partition DAY from a real fixture; `description=True` stores the fixture's text."""
    fx = fixture_posting(fixtures_dir, name)
    content = fx["job_content"]
    loc = content["location"]
    ext = f"{fx['job_metadata']['job_id']}-{source}"
    record = PostingRecord(
        source=source, external_id=ext, title=html.unescape(content["title"]), employer="Deutsche Bank",
        city=loc["city"], state=loc["state"] or None, country=loc["country"], published_date=published,
        raw={"id": ext},
    )
    upsert_postings(engine, [record], partition_date=DAY, now=NOW)
    with engine.connect() as conn:
        pid = conn.execute(sa.select(postings.c.posting_id).where(postings.c.external_id == ext)).scalar_one()
    text = content["description"] if description is True else description
    if text:
        set_description(engine, pid, str(text))
    return pid


def set_description(engine: sa.Engine, posting_id: int, text: str) -> None:
    pending = PendingDescription(posting_id, "deutsche_bank", str(posting_id), "api", None, 0)
    save_description(engine, pending, DescriptionOutcome(status=DescriptionStatus.OK, description=text), NOW)


def resources(url: str, host: str, *, scope: LlmScopeResource | None = None, **ollama: Any) -> dict[str, Any]:
    settings = {"read_timeout_s": 5.0, "connect_timeout_s": 1.0, "max_retries": 2, **ollama}
    return {
        "warehouse": WarehouseResource(url=url),
        "ollama": FastOllamaResource(host=host, **settings),
        "llm_scope": scope or LlmScopeResource(),
    }


def step_config(config: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """Per-asset test config as the step's run config: shared settings at the top, the rest per lane."""
    out: dict[str, Any] = {}
    for name, cfg in (config or {}).items():
        for key, value in cfg.items():
            if key in SHARED_KEYS:
                out[key] = value
            else:
                out.setdefault(LANE_CONFIG_KEYS[name], {})[key] = value
    return out


def run(
    assets: list[Any], url: str, host: str, *, config: dict[str, dict[str, Any]] | None = None,
    ok: bool = True, scope: LlmScopeResource | None = None, instance: dg.DagsterInstance | None = None,
    **ollama: Any,
) -> dg.ExecuteInProcessResult:
    """Materialize the named LLM lanes (and any asset checks passed along) for partition DAY."""
    lanes = [a for a in assets if isinstance(a, str)]
    others = [a for a in assets if not isinstance(a, str)]
    result = dg.materialize(
        [llm_enrichment, *others], partition_key=DAY.isoformat(), resources=resources(url, host, scope=scope, **ollama),
        instance=instance, selection=dg.AssetSelection.assets(*lanes),
        run_config={"ops": {"llm_enrichment": {"config": step_config(config)}}},
        raise_on_error=False,
    )
    assert result.success is ok, [e.event_specific_data for e in result.all_events if e.is_failure]
    return result


def meta(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    (mat,) = [m for m in result.asset_materializations_for_node("llm_enrichment") if m.asset_key.path == [asset]]
    return {k: v.value for k, v in mat.metadata.items()}


def checks(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key.path == [asset]}


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)


def rows(engine: sa.Engine, asset: str) -> dict[int, dict[str, Any]]:
    return {r["posting_id"]: r for r in saved_rows(engine, TABLES[asset], DAY)}


def enriched(engine: sa.Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text(
            "SELECT posting_id, summary, skill_keywords, ihl_score, ihl_category FROM postings_enriched"
        ))
        return {r.posting_id: dict(r._mapping) for r in result}


def calls_by_posting(fake: FakeOllama, start: int = 0) -> Counter[str]:
    """Chat calls per posting title, from the fake's request log (index `start` on)."""
    titles: Counter[str] = Counter()
    for request in fake.chat_calls()[start:]:
        titles[facts(posting_of(request.json()))["Title"]] += 1
    return titles


def title_of(engine: sa.Engine, posting_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(postings.c.title).where(postings.c.posting_id == posting_id)).scalar_one()


ALL = [posting_summaries, skill_keywords, ihl_scores]


def meet_partner_grader(llm: ScriptedLlm, timeout_s: float = 10.0) -> dict[str, bool]:
    """Make each grader answer only after the other grader of the same posting arrived (no clocks: a
    sequential pair waits out `timeout_s` and is recorded as not having met). Returns title -> met."""
    barriers: dict[str, threading.Barrier] = {}
    met: dict[str, bool] = {}
    lock = threading.Lock()
    original = llm.answer

    def responder(model: str, body: dict[str, Any]) -> dict[str, Any]:
        if schema_of(body) == "Grade":
            title = facts(posting_of(body))["Title"]
            with lock:
                barrier = barriers.setdefault(title, threading.Barrier(2))
            try:
                barrier.wait(timeout_s)
                met.setdefault(title, True)
            except threading.BrokenBarrierError:
                met[title] = False
        return original(model, body)

    llm.respond = responder  # type: ignore[attr-defined]
    return met


# -- happy path -------------------------------------------------------------------------------------------


def test_all_three_assets_save_their_results_with_at_most_seven_calls_per_posting(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, llm: ScriptedLlm
) -> None:
    ids = [add_posting(engine, fixtures_dir, n, published=DAY - timedelta(days=i)) for i, n in enumerate(FIXTURES[:3])]
    no_text = add_posting(engine, fixtures_dir, "job61951", description=None)
    other_source = add_posting(engine, fixtures_dir, "job64727", source=Source.ARBEITSAGENTUR)

    meetings = meet_partner_grader(llm)
    # 16 slots: room for both graders of every posting at once, which the barrier below proves.
    result = run([*ALL, *build_llm_output_checks()], warehouse_url, fake.base_url, hosts=f"{fake.base_url}=16")

    # Cost: 3 (extract + two graders) + 1 (skills) + 3 (analyst, skeptic, HR expert) per posting.
    assert len(fake.chat_calls()) == 7 * len(ids)
    assert set(calls_by_posting(fake).values()) == {7}
    view = enriched(engine)
    for pid in ids:
        posting = next(posting_of(r.json()) for r in fake.chat_calls()
                       if facts(posting_of(r.json()))["Title"] == title_of(engine, pid))
        # The stored text is the code rendering of the extracted fields, not anything a model wrote.
        assert view[pid]["summary"] == render_summary(SummaryFields(**summary_fields(posting)))
        skills = json.loads(view[pid]["skill_keywords"])
        assert skills and len({s.casefold() for s in skills}) == len(skills)
        score, _verdict = ihl_score_for(posting)
        assert (view[pid]["ihl_score"], view[pid]["ihl_category"]) == (score, str(category_for_score(score)))
    for pid in (no_text, other_source):
        assert (view[pid]["summary"], view[pid]["skill_keywords"], view[pid]["ihl_score"]) == (None, None, None)

    summaries = rows(engine, "posting_summaries")
    assert {pid: r["status"] for pid, r in summaries.items()} == {**dict.fromkeys(ids, "passed"),
                                                                  no_text: "skipped_no_description"}
    first = summaries[ids[0]]
    assert json.loads(first["models"]) == {"extract": QWEN, "graders": [QWEN, LLAMA], "improve": QWEN}
    assert first["prompt_version"] == "summary/2.2.2+p1" and len(first["input_hash"]) == 64 and first["attempts"] == 1
    assert [g["verdict"] for g in json.loads(first["grades_json"])[0]["grades"]] == ["PASS", "PASS"]
    assert SummaryFields.model_validate_json(first["fields_json"]).role == title_of(engine, ids[0])

    # The two graders of every posting were in flight at the same time: each answered only once its
    # partner had arrived (a barrier per posting in the responder, see `meet_partner_grader`).
    assert meetings and all(meetings.values()), meetings
    for pid in ids:
        grades = [r for r in fake.chat_calls() if schema_of(r.json()) == "Grade"
                  and facts(posting_of(r.json()))["Title"] == title_of(engine, pid)]
        assert sorted(r.json()["model"] for r in grades) == sorted([QWEN, LLAMA])
        assert meetings[title_of(engine, pid)]

    # Skill detail rows: the duplicate "- python." style answer merged into one name with its best importance.
    with engine.connect() as conn:
        items = conn.execute(sa.select(skill_keyword_items).where(skill_keyword_items.c.posting_id == ids[0])
                             .order_by(skill_keyword_items.c.rank)).all()
    assert [i.skill for i in items] == json.loads(view[ids[0]]["skill_keywords"])
    assert items[0].importance == "essential" and [i.rank for i in items] == list(range(1, len(items) + 1))

    finanz = next(pid for pid in ids if "Finanzberater" in title_of(engine, pid))
    ihl = rows(engine, "ihl_scores")[finanz]
    assert (ihl["ihl_score"], ihl["ihl_category"], ihl["ihl_verdict"], ihl["verdict_disagrees"]) == (
        7, "COMPLIANCE_THEATER", "BORDERLINE", True)
    assert set(json.loads(ihl["details_json"])) == {"analyst", "skeptic", "hr_expert", "result"}
    assert json.loads(ihl["red_flags_json"])[0]["evidence"] == "Heilberufe"
    # The skeptic saw the analyst's answer; the HR expert saw both.
    skeptic = next(r.json() for r in fake.chat_calls() if schema_of(r.json()) == "SkepticOutput")
    expert = next(r.json() for r in fake.chat_calls() if schema_of(r.json()) == "HRExpertOutput")
    assert "analyst_verdict" in _section(first_user_message(skeptic), "analyst_assessment_json")
    assert "skeptic_verdict" in _section(first_user_message(expert), "skeptic_assessment_json")
    assert all(r.json()["options"]["temperature"] == 0 and r.json()["options"]["seed"] == 42
               for r in fake.chat_calls())

    m = meta(result, "posting_summaries")
    assert (m["processed"], m["cached"], m["failed"], m["pending"], m["skipped_no_description"]) == (3, 0, 0, 0, 1)
    assert m["llm_calls"] == 9 and m["eval_tokens"] > 0 and m["latency_p95_s"] >= m["latency_p50_s"] > 0
    assert m["cached_prompt_tokens"] == 0  # Ollama does not report prefix-cache hits; OpenAI servers do
    assert m["status_counts"] == {"passed": 3} and m["models"] == f"{QWEN}, {LLAMA}"
    # The posting skipped for want of a description was never asked: it does not lower the rates.
    assert m["partition_status_counts"].get("skipped_no_description") == 1
    assert (m["pass_rate"], m["partition_pass_rate"]) == (1.0, 1.0)
    assert meta(result, "skill_keywords")["llm_calls"] == 3 and meta(result, "ihl_scores")["llm_calls"] == 9
    # The in-asset check of this run and the standalone audits of what was saved all pass.
    assert checks(result, "posting_summaries") == {
        LLM_ERRORS_CHECK: True, "no_degenerate_summaries": True, "summaries_complete": True}
    assert checks(result, "skill_keywords") == {
        LLM_ERRORS_CHECK: True, "skill_lists_well_formed": True, "skill_keywords_complete": True}
    assert checks(result, "ihl_scores") == {
        LLM_ERRORS_CHECK: True, "ihl_scores_consistent": True, "ihl_scores_complete": True}


def test_a_second_run_makes_no_calls_and_a_changed_description_is_recomputed(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    ids = [add_posting(engine, fixtures_dir, n) for n in FIXTURES[:2]]
    run(ALL, warehouse_url, fake.base_url)
    before = {asset: rows(engine, asset) for asset in TABLES}
    calls = len(fake.chat_calls())

    again = run(ALL, warehouse_url, fake.base_url)
    assert len(fake.chat_calls()) == calls
    assert meta(again, "posting_summaries")["cached"] == 2 and meta(again, "ihl_scores")["processed"] == 0
    assert {asset: rows(engine, asset) for asset in TABLES} == before

    fx = fixture_posting(fixtures_dir, FIXTURES[1])
    set_description(engine, ids[1], fx["job_content"]["description"] + " Wir freuen uns auf Ihre Bewerbung.")
    run(ALL, warehouse_url, fake.base_url)
    assert calls_by_posting(fake, calls) == {title_of(engine, ids[1]): 7}
    after = rows(engine, "posting_summaries")
    assert after[ids[0]] == before["posting_summaries"][ids[0]]
    assert after[ids[1]]["input_hash"] != before["posting_summaries"][ids[1]]["input_hash"]
    assert after[ids[1]]["status"] == "passed" and after[ids[1]]["attempts"] == 1


def test_a_text_that_arrives_later_turns_a_skipped_posting_into_a_result(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[0], description="Kurzer Text.")
    first = run([skill_keywords], warehouse_url, fake.base_url)
    assert fake.requests == []  # nothing to compute: not even the preflight
    assert rows(engine, "skill_keywords")[pid]["status"] == "skipped_no_description"
    assert meta(first, "skill_keywords")["llm_server_version"] == "not contacted"
    run([skill_keywords], warehouse_url, fake.base_url)
    assert rows(engine, "skill_keywords")[pid]["updated_at"] is not None and fake.requests == []

    set_description(engine, pid, fixture_posting(fixtures_dir, FIXTURES[0])["job_content"]["description"])
    run([skill_keywords], warehouse_url, fake.base_url)
    assert rows(engine, "skill_keywords")[pid]["status"] == "ok" and len(fake.chat_calls()) == 1


# -- grading ----------------------------------------------------------------------------------------------


def test_a_failing_grader_gets_one_improve_step_and_a_regrade_by_both(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, llm: ScriptedLlm
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[1])
    reason = "Responsibilities: the first duty is vaguer than the posting"
    llm.grade = lambda model, summary: (
        ("FAIL", [reason]) if model == LLAMA and "as the posting describes it" not in summary else ("PASS", [])
    )
    result = run([posting_summaries], warehouse_url, fake.base_url)

    row = rows(engine, "posting_summaries")[pid]
    assert row["status"] == "passed_after_improve" and row["attempts"] == 1
    rounds = json.loads(row["grades_json"])
    assert [[g["verdict"] for g in r["grades"]] for r in rounds] == [["PASS", "FAIL"], ["PASS", "PASS"]]
    assert "as the posting describes it" in enriched(engine)[pid]["summary"]
    # extract + 2 graders + improve + 2 graders
    assert len(fake.chat_calls()) == 6
    improve = next(r.json() for r in fake.chat_calls() if is_improve(r.json()))
    assert reason in _section(first_user_message(improve), "reviewer_reasons")
    assert meta(result, "posting_summaries")["status_counts"] == {"passed_after_improve": 1}


def test_graders_that_keep_failing_leave_no_summary_and_the_verdict_is_final_for_that_input(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, llm: ScriptedLlm
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[2])
    llm.grade = lambda model, summary: ("FAIL", ["Requirements: 'Good command of German' is not in the posting"])
    result = run([posting_summaries], warehouse_url, fake.base_url)  # a verdict, not an error: the run succeeds
    assert meta(result, "posting_summaries")["status_counts"] == {"failed_grading": 1}
    assert meta(result, "posting_summaries")["pass_rate"] == 0.0  # a verdict counts against the rate
    row = rows(engine, "posting_summaries")[pid]
    assert row["status"] == "failed_grading" and row["summary"] is None and enriched(engine)[pid]["summary"] is None
    assert "not in the posting" in row["error"] and row["fields_json"]
    calls = len(fake.chat_calls())
    assert calls == 6

    run([posting_summaries], warehouse_url, fake.base_url)
    assert len(fake.chat_calls()) == calls


# -- faults -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["timeout", "500", "503"])
def test_transient_server_faults_are_retried_and_the_posting_succeeds(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, kind: str
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[3])
    fake.fail_next(1, kind, endpoint="chat", delay_s=1.0)
    result = run([skill_keywords], warehouse_url, fake.base_url, read_timeout_s=0.3)
    assert len(fake.chat_calls()) == 2
    assert rows(engine, "skill_keywords")[pid]["status"] == "ok"
    assert "UNIX" in json.loads(enriched(engine)[pid]["skill_keywords"])
    m = meta(result, "skill_keywords")
    assert (m["llm_calls"], m["llm_http_attempts"]) == (1, 2)


@pytest.mark.parametrize("kind", ["not_json", "schema_violation", "degenerate", "length"])
def test_an_unusable_answer_gets_one_corrective_retry_then_succeeds(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, kind: str
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[3])
    fake.fail_next(1, kind, endpoint="chat")
    run([skill_keywords], warehouse_url, fake.base_url)
    first, second = fake.chat_calls()
    assert len(second.json()["messages"]) == len(first.json()["messages"]) + 2  # bad answer + correction
    assert second.json()["messages"][-1]["content"].startswith("Your previous answer cannot be used")
    assert rows(engine, "skill_keywords")[pid]["status"] == "ok"


@pytest.mark.parametrize(
    "kind, reason",
    [("not_json", "not valid JSON"), ("schema_violation", "does not match the schema"),
     ("degenerate", "no usable skill name"), ("length", "cut off")],
)
def test_an_answer_unusable_twice_is_a_recorded_failure_with_its_reason_and_no_value(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, kind: str, reason: str
) -> None:
    good = add_posting(engine, fixtures_dir, FIXTURES[0], published=DAY - timedelta(days=1))
    bad = add_posting(engine, fixtures_dir, FIXTURES[3], published=DAY)
    fake.fail_next(2, kind, endpoint="chat")  # one worker, newest first: both faults hit the newest posting
    result = run([skill_keywords], warehouse_url, fake.base_url, config={"skill_keywords": {"workers": 1}})
    row = rows(engine, "skill_keywords")[bad]
    assert row["status"] == "llm_error" and reason in row["error"] and row["attempts"] == 1
    assert row["skills_json"] is None and enriched(engine)[bad]["skill_keywords"] is None
    assert enriched(engine)[good]["skill_keywords"] is not None
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(skill_keyword_items)
                            .where(skill_keyword_items.c.posting_id == bad)).scalar_one() == 0
    assert meta(result, "skill_keywords")["failed"] == 1
    # Rates as floats the UI plots over partitions: one of the run's two saved results succeeded.
    (mat,) = [m for m in result.asset_materializations_for_node("llm_enrichment") if m.asset_key.path == ["skill_keywords"]]
    assert mat.metadata["pass_rate"] == dg.MetadataValue.float(0.5)
    assert mat.metadata["partition_pass_rate"] == dg.MetadataValue.float(0.5)
    assert checks(result, "skill_keywords") == {LLM_ERRORS_CHECK: False}
    (failed,) = [e for e in result.get_asset_check_evaluations() if e.check_name == LLM_ERRORS_CHECK]
    assert failed.metadata["reason"].value.startswith("1 postings failed in this run and 0 are out of attempts")
    table = failed.metadata["examples"].value
    with engine.connect() as conn:
        title = conn.execute(sa.select(postings.c.title).where(postings.c.posting_id == bad)).scalar_one()
    assert f"| {bad} | deutsche_bank:" in table and title in table and reason in table


def test_invalid_summary_and_ihl_answers_never_reach_the_view(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[1])
    fake.fail_next(2, "not_json", endpoint="chat", model=QWEN)  # the extract call and its corrective retry
    result = run([posting_summaries], warehouse_url, fake.base_url, ok=False)
    assert "every one of 1 postings failed" in failure_text(result)
    row = rows(engine, "posting_summaries")[pid]
    assert row["status"] == "llm_error" and row["error"].startswith("extract: LlmInvalidAnswer (")
    assert row["summary"] is None and row["fields_json"] is None

    fake.fail_next(2, "degenerate", endpoint="chat")  # the analyst's reasoning loops, twice
    run([ihl_scores], warehouse_url, fake.base_url, ok=False)
    row = rows(engine, "ihl_scores")[pid]
    assert row["status"] == "llm_error" and "ihl analyst" in row["error"] and "repeated" in row["error"]
    assert (row["ihl_score"], row["ihl_category"], row["details_json"]) == (None, None, None)
    view = enriched(engine)[pid]
    assert (view["summary"], view["ihl_score"], view["ihl_category"]) == (None, None, None)
    assert len(fake.chat_calls(LLAMA)) == 0  # no grader ever saw an unusable extraction


# -- fail fast --------------------------------------------------------------------------------------------


def test_a_missing_model_fails_the_run_before_any_posting_is_touched(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, llm: ScriptedLlm
) -> None:
    add_posting(engine, fixtures_dir, FIXTURES[0])
    add_posting(engine, fixtures_dir, FIXTURES[1], description=None)  # would get a skipped row
    with FakeOllama(models=[QWEN], responder=llm) as fake:
        result = run([posting_summaries], warehouse_url, fake.base_url, ok=False)
        assert {r.path for r in fake.requests} <= {"/api/version", "/api/tags"} and fake.requests
    assert f"ollama pull {LLAMA}" in failure_text(result)
    assert rows(engine, "posting_summaries") == {}


def test_an_unreachable_server_fails_the_run_at_once_with_what_to_do(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path
) -> None:
    add_posting(engine, fixtures_dir, FIXTURES[0])
    add_posting(engine, fixtures_dir, FIXTURES[1], description=None)
    result = run([ihl_scores], warehouse_url, UNUSED_URL, ok=False)
    assert "not reachable" in failure_text(result) and "OLLAMA_HOST" in failure_text(result)
    assert rows(engine, "ihl_scores") == {}


# -- kill and resume --------------------------------------------------------------------------------------


def test_a_run_killed_halfway_resumes_without_paying_twice_and_ends_like_an_uninterrupted_run(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    ids = [add_posting(engine, fixtures_dir, n, published=DAY - timedelta(days=i)) for i, n in enumerate(FIXTURES)]
    run([posting_summaries], warehouse_url, fake.base_url)
    uninterrupted = {pid: {c: r[c] for c in COMPARED} for pid, r in rows(engine, "posting_summaries").items()}
    assert {r["status"] for r in uninterrupted.values()} == {"passed"}
    with engine.begin() as conn:
        conn.execute(sa.delete(summaries_table))
    fake.reset()

    fake.stop_after(5)  # the server dies after five answers: in the middle of a posting
    # Two postings in flight, so the five answers finish one posting (extract + two graders).
    killed = run([posting_summaries], warehouse_url, fake.base_url, ok=False,
                 config={"posting_summaries": {"workers": 2}})
    assert "stopped early" in failure_text(killed)
    saved = rows(engine, "posting_summaries")
    assert 0 < len(saved) < len(ids) and {r["status"] for r in saved.values()} == {"passed"}

    fake.revive()
    start = len(fake.chat_calls())
    resumed = run([posting_summaries], warehouse_url, fake.base_url)
    again = calls_by_posting(fake, start)
    assert not {title_of(engine, pid) for pid in saved} & set(again)
    assert sum(again.values()) == 3 * (len(ids) - len(saved))
    assert meta(resumed, "posting_summaries")["cached"] == len(saved)
    final = {pid: {c: r[c] for c in COMPARED} for pid, r in rows(engine, "posting_summaries").items()}
    assert final == uninterrupted


# -- retries across runs ----------------------------------------------------------------------------------


def test_llm_errors_are_retried_on_later_runs_up_to_max_attempts(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[2])
    for attempt in (1, 2, 3):
        fake.fail_next(2, "not_json", endpoint="chat")
        run([skill_keywords], warehouse_url, fake.base_url, ok=False)
        row = rows(engine, "skill_keywords")[pid]
        assert (row["status"], row["attempts"]) == ("llm_error", attempt)
    calls = len(fake.chat_calls())
    assert calls == 6

    exhausted = run([skill_keywords], warehouse_url, fake.base_url)
    assert len(fake.chat_calls()) == calls
    assert meta(exhausted, "skill_keywords")["out_of_attempts"] == 1
    assert checks(exhausted, "skill_keywords")[LLM_ERRORS_CHECK] is False
    (out,) = [e for e in exhausted.get_asset_check_evaluations() if e.check_name == LLM_ERRORS_CHECK]
    assert "0 postings failed in this run and 1 are out of attempts" in out.metadata["reason"].value
    assert f"| {pid} | deutsche_bank:" in out.metadata["examples"].value and "attempt 3:" in out.metadata["examples"].value

    set_description(engine, pid, fixture_posting(fixtures_dir, FIXTURES[2])["job_content"]["description"] + " Neu.")
    run([skill_keywords], warehouse_url, fake.base_url)
    row = rows(engine, "skill_keywords")[pid]
    assert (row["status"], row["attempts"]) == ("ok", 1)


def test_an_error_retried_on_the_next_run_can_succeed(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    pid = add_posting(engine, fixtures_dir, FIXTURES[0])
    fake.fail_next(2, "length", endpoint="chat")
    run([ihl_scores], warehouse_url, fake.base_url, ok=False)
    assert rows(engine, "ihl_scores")[pid]["status"] == "llm_error"
    result = run([ihl_scores], warehouse_url, fake.base_url)
    row = rows(engine, "ihl_scores")[pid]
    assert (row["status"], row["attempts"], row["error"]) == ("ok", 2, None)
    assert meta(result, "ihl_scores")["retried"] == 1


# -- scope and cost control -------------------------------------------------------------------------------


def test_scope_covers_configured_sources_newest_first_and_leaves_the_rest_pending(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = add_posting(engine, fixtures_dir, FIXTURES[0], published=DAY - timedelta(days=3))
    newest = add_posting(engine, fixtures_dir, FIXTURES[1], published=DAY)
    middle = add_posting(engine, fixtures_dir, FIXTURES[2], published=DAY - timedelta(days=1))
    aa = add_posting(engine, fixtures_dir, FIXTURES[3], source=Source.ARBEITSAGENTUR)

    monkeypatch.setenv("TY_LLM_MAX_POSTINGS", "2")
    monkeypatch.delenv("TY_LLM_SOURCES", raising=False)
    with_checks = [skill_keywords, *build_llm_output_checks()]
    first = run(with_checks, warehouse_url, fake.base_url, scope=LlmScopeResource())
    assert set(rows(engine, "skill_keywords")) == {newest, middle}
    m = meta(first, "skill_keywords")
    assert (m["processed"], m["pending"], m["sources"]) == (2, 1, "deutsche_bank")
    # What the cap left out is visible: the completeness check fails (as a warning) and names the posting.
    (complete,) = [e for e in first.get_asset_check_evaluations() if e.check_name == "skill_keywords_complete"]
    assert not complete.passed and complete.severity == dg.AssetCheckSeverity.WARN
    assert (complete.metadata["in_scope"].value, complete.metadata["done"].value) == (3, 2)
    assert complete.metadata["by_status"].value == {"ok": 2, "pending": 1}
    (example,) = complete.metadata["pending_examples"].value
    assert example.startswith("deutsche_bank:") and example.endswith(f"(posting_id {older})")
    assert complete.metadata["reason"].value == (
        f"2 of 3 in-scope postings of {DAY} have a saved result (67%), below the threshold of 95%: 1 pending (left "
        "by the per-run cap or not run yet), 0 failed")
    table = complete.metadata["examples"].value
    assert f"| {older} | deutsche_bank:" in table and table.rstrip().endswith("| pending |")

    second = run(with_checks, warehouse_url, fake.base_url, scope=LlmScopeResource())
    assert set(rows(engine, "skill_keywords")) == {newest, middle, older}
    assert (meta(second, "skill_keywords")["processed"], meta(second, "skill_keywords")["pending"]) == (1, 0)
    assert checks(second, "skill_keywords")["skill_keywords_complete"] is True

    monkeypatch.setenv("TY_LLM_SOURCES", "deutsche_bank,arbeitsagentur")
    run([skill_keywords], warehouse_url, fake.base_url, scope=LlmScopeResource(),
        config={"skill_keywords": {"max_postings": 0}})
    assert rows(engine, "skill_keywords")[aa]["status"] == "ok"
    assert len(fake.chat_calls()) == 4


def test_workers_bound_the_postings_in_flight(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    for name in FIXTURES:
        add_posting(engine, fixtures_dir, name)
    fake.latency_s = 0.1
    instance = dg.DagsterInstance.ephemeral()
    result = run([skill_keywords], warehouse_url, fake.base_url, config={"skill_keywords": {"workers": 3}},
                 instance=instance)
    assert fake.max_overlap() == 3
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any(m.startswith("llm_enrichment: 4/4 done") and "ETA" in m for m in messages)
    fake.reset()
    with engine.begin() as conn:
        conn.execute(sa.delete(skills_table))
    run([skill_keywords], warehouse_url, fake.base_url, config={"skill_keywords": {"workers": 1}})
    assert fake.max_overlap() == 1 and len(fake.chat_calls()) == 4


def test_calls_in_flight_follow_the_hosts_slots_across_all_three_assets(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    """No fixed worker count: the step keeps twice the slots in tasks and the host pool lets exactly the
    host's slots run at once, whichever asset the calls belong to."""
    for i, name in enumerate(FIXTURES):
        add_posting(engine, fixtures_dir, name, published=DAY - timedelta(days=i))
    fake.latency_s = 0.05
    result = run(ALL, warehouse_url, fake.base_url, hosts=f"{fake.base_url}=3")
    assert fake.max_overlap() == 3
    m = meta(result, "ihl_scores")
    assert (m["llm_slots"], m["workers"]) == (3, 6)
    assert len(fake.chat_calls()) == 7 * len(FIXTURES)


@pytest.mark.parametrize("kind", ["503", "500", "timeout"])
def test_a_503_storm_or_a_hang_stops_the_run_and_charges_no_posting_an_attempt(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama, kind: str
) -> None:
    """Server failures are not the postings' fault: nothing is saved, nothing is charged, the step fails
    with the reason, and the next run computes every posting at its first attempt."""
    ids = [add_posting(engine, fixtures_dir, n, published=DAY - timedelta(days=i)) for i, n in enumerate(FIXTURES[:3])]
    fake.fail_next(100, kind, endpoint="chat", delay_s=1.0)  # timeout: answers after 1 s, read timeout 0.2 s
    result = run([skill_keywords], warehouse_url, fake.base_url, ok=False, max_retries=1, read_timeout_s=0.2,
                 config={"skill_keywords": {"workers": 1, "abort_after_consecutive_transport_errors": 2}})
    text = failure_text(result)
    assert "2 postings in a row met server failures" in text and "none was charged an attempt" in text
    assert "3 left pending" in text
    assert rows(engine, "skill_keywords") == {}  # no llm_error row, no attempt spent
    assert len(fake.chat_calls()) == 4  # two postings x (one try + one retry); the third was never sent

    fake.reset()
    again = run([skill_keywords], warehouse_url, fake.base_url)
    saved = rows(engine, "skill_keywords")
    assert set(saved) == set(ids) and {(r["status"], r["attempts"]) for r in saved.values()} == {("ok", 1)}
    assert meta(again, "skill_keywords")["server_errors"] == 0


def test_one_server_failure_defers_that_posting_and_the_run_goes_on(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    ids = [add_posting(engine, fixtures_dir, n, published=DAY - timedelta(days=i)) for i, n in enumerate(FIXTURES[:3])]
    fake.fail_next(2, "503", endpoint="chat")  # the newest posting's try and its one retry
    result = run([skill_keywords], warehouse_url, fake.base_url, max_retries=1,
                 config={"skill_keywords": {"workers": 1}})
    m = meta(result, "skill_keywords")
    assert (m["processed"], m["server_errors"], m["pending"], m["failed"]) == (2, 1, 1, 0)
    assert set(rows(engine, "skill_keywords")) == set(ids[1:])  # the newest one has no row: still pending


def test_the_assets_load_with_the_output_checks_and_their_resources() -> None:
    defs = dg.Definitions(
        assets=[llm_enrichment],
        asset_checks=build_llm_output_checks(),
        resources={"warehouse": WarehouseResource(), "ollama": OllamaResource(), "llm_scope": LlmScopeResource()},
    )
    dg.Definitions.validate_loadable(defs)
    assert llm_enrichment.node_def.pool == "ollama" and llm_enrichment.can_subset
    specs = {spec.key.path[-1]: spec for spec in llm_enrichment.specs}
    assert set(specs) == set(ALL)
    for spec in specs.values():
        assert spec.group_name == "llm" and [d.asset_key.path for d in spec.deps] == [["job_descriptions"]]


def test_a_grader_that_cannot_answer_is_an_llm_error_of_that_posting_not_a_verdict(
    warehouse_url: str, engine: sa.Engine, fixtures_dir: Path, fake: FakeOllama
) -> None:
    good = add_posting(engine, fixtures_dir, FIXTURES[0], published=DAY - timedelta(days=1))
    bad = add_posting(engine, fixtures_dir, FIXTURES[2], published=DAY)
    fake.fail_next(2, "schema_violation", endpoint="chat", model=LLAMA)  # the newest posting's second grader
    result = run([posting_summaries], warehouse_url, fake.base_url, config={"posting_summaries": {"workers": 1}})
    row = rows(engine, "posting_summaries")[bad]
    assert row["status"] == "llm_error" and row["error"].startswith(f"grade ({LLAMA}): LlmInvalidAnswer")
    assert row["summary"] is None and row["fields_json"] and row["grades_json"] is None
    assert rows(engine, "posting_summaries")[good]["status"] == "passed"
    # extract + qwen grader + llama grader and its corrective retry, then 3 for the good posting
    assert len(fake.chat_calls()) == 7 and meta(result, "posting_summaries")["llm_calls"] == 7
