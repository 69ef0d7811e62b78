"""Scope and cap follow capacity: measured postings/hour per host, the cap before 06:00, the ETA."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from ty_pipeline.domain.clock import BERLIN
from ty_pipeline.domain.llm_capacity import (
    FALLBACK_CAP,
    HostRun,
    RunThroughput,
    capacity_cap,
    eta,
    host_rates,
    hours_left,
    next_deadline,
    posting_equivalents,
    total_rate,
)
from ty_pipeline.domain.llm_scope import default_llm_sources, llm_sources
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.llm_throughput_store import recent_runs, record_run
from ty_pipeline_tests.fakes.ollama_server import FakeOllama
from ty_pipeline_tests.test_llm_assets import FIXTURES, ScriptedLlm, add_posting, meta, run, skill_keywords

NIGHT = datetime(2026, 12, 2, 23, 0, tzinfo=BERLIN)


def run_of(postings: float, wall_s: float, *hosts: HostRun, at: datetime | None = None) -> RunThroughput:
    return RunThroughput(finished_at=at or datetime(2026, 12, 2, 22, 0), wall_s=wall_s, postings=postings,
                         hosts=tuple(hosts))


def test_a_posting_counts_once_when_all_three_assets_did_it_and_by_its_calls_otherwise() -> None:
    assert posting_equivalents({"posting_summaries": 10, "skill_keywords": 10, "ihl_scores": 10}) == 10
    assert posting_equivalents({"skill_keywords": 7}) == 1  # one call of seven
    assert posting_equivalents({"posting_summaries": 7, "ihl_scores": 7}) == 6


def test_each_host_is_credited_with_its_share_of_the_calls() -> None:
    runs = [
        run_of(100, 3600, HostRun("http://a:8000", 32, 300, 3000.0), HostRun("http://b:8000", 32, 100, 1000.0)),
        run_of(50, 1800, HostRun("http://a:8000", 32, 350, 1700.0)),
    ]
    rates = {r.host: r for r in host_rates(runs)}
    assert rates["http://a:8000"].postings_per_hour == pytest.approx((75 + 50) / 1.5)
    assert rates["http://b:8000"].postings_per_hour == pytest.approx(25 / 1.0)
    assert (rates["http://a:8000"].runs, rates["http://b:8000"].runs) == (2, 1)
    assert total_rate(runs) == pytest.approx(150 / 1.5)
    assert total_rate([]) is None and total_rate([run_of(0, 10)]) is None


def test_the_deadline_is_the_next_six_in_the_morning_in_berlin() -> None:
    assert next_deadline(NIGHT) == datetime(2026, 12, 3, 6, 0, tzinfo=BERLIN)
    early = datetime(2026, 12, 3, 4, 30, tzinfo=BERLIN)
    assert next_deadline(early) == datetime(2026, 12, 3, 6, 0, tzinfo=BERLIN)
    assert hours_left(early) == pytest.approx(1.5)
    assert hours_left(NIGHT.astimezone(UTC)) == pytest.approx(7.0)  # any zone in, Berlin's clock out


def test_the_cap_is_what_the_measured_rate_finishes_before_the_deadline() -> None:
    assert capacity_cap(None, NIGHT) == FALLBACK_CAP
    assert capacity_cap(2000.0, NIGHT) == 14_000
    assert capacity_cap(2000.0, NIGHT, share=0.5) == 7_000
    assert capacity_cap(0.01, datetime(2026, 12, 3, 5, 59, tzinfo=BERLIN)) == 1  # never zero


def test_the_eta_says_whether_the_pending_postings_make_the_deadline() -> None:
    assert eta(0, None, NIGHT).text() == "nothing pending"
    assert "no measured run yet" in eta(40, None, NIGHT).text()
    made = eta(7000, 2000.0, NIGHT)
    assert made.before_deadline and made.text().startswith("7000 pending at 2000 postings/h: 3 h 30 min, before")
    late = eta(16000, 2000.0, NIGHT)
    assert late.before_deadline is False and "AFTER the 06:00 deadline" in late.text()


def test_the_default_scope_is_every_source_once_a_fleet_is_listed() -> None:
    assert default_llm_sources({}) == ("deutsche_bank",)
    assert default_llm_sources({"TY_LLM_HOSTS": "http://a:8000=32,http://b:8000=32"}) == (
        "arbeitsagentur", "deutsche_bank")
    assert llm_sources({"TY_LLM_HOSTS": "http://a:8000", "TY_LLM_SOURCES": "deutsche_bank"}) == ("deutsche_bank",)


def test_the_configured_cap_wins_over_the_measured_one() -> None:
    assert LlmScopeResource().cap(measured=1234) == 1234
    assert LlmScopeResource(max_postings=50).cap(measured=1234) == 50
    assert LlmScopeResource(max_postings=0).cap(measured=1234) is None  # 0 = no cap
    assert LlmScopeResource().cap(7, measured=1234) == 7  # run config


def test_recorded_runs_come_back_newest_first_per_run(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    base = datetime(2026, 12, 1, 22, 0)
    for i in range(9):
        hosts = (HostRun("http://a:8000", 4, 10 + i, 50.0), HostRun("http://b:8000", 8, 20, 60.0))
        record_run(engine, run_id=f"run-{i}", day=date(2026, 12, 1), run=run_of(i + 1, 100.0, *hosts,
                                                                               at=base + timedelta(minutes=i)))
    record_run(engine, run_id="run-8", day=date(2026, 12, 1),
               run=run_of(9, 90.0, HostRun("http://a:8000", 4, 99, 1.0), at=base + timedelta(minutes=8)))
    runs = recent_runs(engine, limit=3)
    assert [r.postings for r in runs] == [9, 8, 7]
    assert runs[0].hosts == (HostRun("http://a:8000", 4, 99, 1.0),)  # a re-executed run replaced its rows
    assert {h.host for h in runs[1].hosts} == {"http://a:8000", "http://b:8000"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM llm_throughput")).scalar_one() == 17


def test_a_run_records_its_throughput_and_the_next_run_takes_its_cap_from_it(
    warehouse_url: str, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TY_LLM_MAX_POSTINGS", raising=False)
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    for name in FIXTURES[:2]:
        add_posting(engine, fixtures_dir, name)
    with FakeOllama(responder=ScriptedLlm(), latency_s=0.02) as fake:
        first = run([skill_keywords], warehouse_url, fake.base_url)
        m = meta(first, "skill_keywords")
        assert m["llm_cap"] == FALLBACK_CAP and m["llm_cap_source"].startswith("no measured run yet")
        assert m["postings_per_hour"] > 0 and fake.base_url.split("//")[1] in m["llm_hosts"]
        assert m["pending_eta"] == "nothing pending"
        add_posting(engine, fixtures_dir, FIXTURES[2])
        second = run([skill_keywords], warehouse_url, fake.base_url)
    m2 = meta(second, "skill_keywords")
    assert m2["llm_cap_source"].startswith("measured ") and "until 06:00 Berlin" in m2["llm_cap_source"]
    assert m2["processed"] == 1
    (latest, earlier) = recent_runs(engine)
    assert earlier.postings == pytest.approx(2 / 7) and latest.postings == pytest.approx(1 / 7)
    assert latest.hosts[0].calls == 1
