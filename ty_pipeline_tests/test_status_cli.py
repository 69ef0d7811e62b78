"""`ty-pipeline status`: exact counts on a hand-built warehouse, on SQLite and PostgreSQL.

The seeded warehouse has three recent partitions and one old one, descriptions in every status, LLM rows
of both sources, embeddings that are current, retired or missing their vector, Berufenet rows with and
without a profession, and invalidated postings that must drop out of every downstream scope. Each
expected figure below is worked out by hand in the comments next to the rows.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ty_pipeline import cli
from ty_pipeline.domain.status_registry import (
    ASSETS,
    LLM_MAX_ATTEMPTS,
    Outcome,
    describe_eta,
    eta_seconds,
    format_duration,
    llm_sources,
)
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.schema import (
    berufenet_mappings,
    demand_snapshots,
    embeddings,
    ihl_scores,
    job_descriptions,
    metadata,
    posting_embeddings,
    posting_summaries,
    postings,
    skill_keywords,
)

NOW_AWARE = datetime(2026, 11, 18, 21, 0, tzinfo=UTC)  # 22:00 in Berlin: still 2026-11-18 there
NOW = NOW_AWARE.replace(tzinfo=None)
RECENT = NOW - timedelta(hours=1)  # inside the default 3 h throughput window
OLD = NOW - timedelta(hours=10)  # outside it
D0 = date(2026, 11, 18)
D1, D2, D10 = D0 - timedelta(days=1), D0 - timedelta(days=2), D0 - timedelta(days=10)
AA, DB = "arbeitsagentur", "deutsche_bank"
MODEL = "fake:model"

LONG = "Wir suchen eine engagierte Pflegefachkraft (m/w/d) in Vollzeit für unser Team in Köln. " * 5  # > 300 chars
SHORT = "Kurzer Text ohne Inhalt."  # < 150 chars
# 160 raw characters, but whitespace runs collapse: the embedder sees "Text Text ..." far under 150.
PADDED = ("Text" + " " * 12) * 10


def _posting(
    pid: int, source: str, day: date, *, title: str | None = "Pflegefachkraft", beruf: str | None = None,
    invalidated: bool = False,
) -> dict:
    return {
        "posting_id": pid, "source": source, "external_id": f"X{pid}", "title": title, "beruf": beruf,
        "partition_date": day,
        "published_date": day, "first_seen_at": RECENT if day == D0 else OLD, "last_seen_at": RECENT,
        "invalidated": invalidated,
    }


def _description(pid: int, status: str, *, text: str | None = None, attempts: int = 1, at: datetime = RECENT) -> dict:
    return {"posting_id": pid, "status": status, "description": text, "attempts": attempts, "fetched_at": at}


def _llm(pid: int, status: str, *, attempts: int = 1, at: datetime = RECENT, **values: Any) -> dict:
    return {"posting_id": pid, "status": status, "attempts": attempts, "updated_at": at, **values}


def seed(url: str) -> None:
    engine = get_engine(url)
    ensure_schema(engine)
    rows: dict[sa.Table, list[dict]] = {
        postings: [
            # D0: 10 postings, 2 invalidated
            _posting(1, AA, D0),
            _posting(2, AA, D0),
            _posting(3, AA, D0),
            _posting(4, AA, D0, title="   "),  # blank title: outside the Berufenet scope
            _posting(5, AA, D0, title=None),
            _posting(6, AA, D0, invalidated=True),
            _posting(7, DB, D0),
            _posting(8, DB, D0),
            _posting(9, DB, D0, title="(m/w/d)"),
            _posting(10, DB, D0, invalidated=True),
            # D1: 4 postings
            _posting(11, AA, D1),
            _posting(12, DB, D1),
            _posting(13, AA, D1),
            _posting(14, DB, D1),
            # D2: 2 postings
            _posting(15, AA, D2, title=None, beruf="Altenpfleger/in"),  # the mapper can use the label
            _posting(16, AA, D2),
            # D10: outside a 7-day window
            _posting(17, AA, D10),
        ],
        job_descriptions: [
            _description(1, "ok", text=LONG),
            _description(2, "too_short", text=SHORT),
            _description(3, "external_partner", at=OLD),
            _description(4, "failed", attempts=1),  # retryable: pending, and not finished work
            _description(6, "not_found"),  # posting invalidated: out of scope, but finished work
            _description(7, "ok", text=LONG),
            _description(8, "ok", text=LONG),
            _description(9, "gave_up", attempts=2),
            _description(10, "ok", text=LONG, at=OLD),
            _description(11, "ok", text=LONG, at=OLD),
            _description(12, "ok", text=LONG, at=OLD),
            _description(13, "failed", attempts=2),  # retries used up: a terminal failure
            _description(14, "ok", text=PADDED),
            _description(16, "ok", text=LONG),
            _description(17, "ok", text=LONG),
        ],
        posting_summaries: [
            _llm(1, "passed", summary=LONG),  # arbeitsagentur: out of the default LLM scope
            _llm(7, "passed", summary=LONG),
            _llm(8, "failed_grading"),
            _llm(10, "passed", summary=LONG),  # invalidated
            _llm(12, "passed_after_improve", summary=LONG, at=OLD),
            _llm(14, "llm_error", attempts=2),
        ],
        skill_keywords: [
            _llm(7, "ok", skills_json='["Pflege"]'),
            _llm(8, "llm_error", attempts=LLM_MAX_ATTEMPTS),
            _llm(12, "ok", skills_json='["Pflege"]', at=OLD),
        ],
        ihl_scores: [
            _llm(7, "llm_error", attempts=1),
            _llm(12, "ok", ihl_score=2, ihl_category="GENUINE", at=OLD),
        ],
        berufenet_mappings: [
            {"posting_id": 1, "status": "exact", "berufenet_id": "B1", "kldb": "81302", "updated_at": RECENT},
            {"posting_id": 2, "status": "no_match", "updated_at": RECENT},
            {"posting_id": 3, "status": "error", "updated_at": RECENT},
            {"posting_id": 9, "status": "no_title", "updated_at": RECENT},
            {"posting_id": 12, "status": "learned", "berufenet_id": "B1", "updated_at": OLD},
        ],
        embeddings: [
            {"text_hash": h, "model": MODEL, "dim": 2, "vector": b"\0" * 8, "created_at": RECENT}
            for h in ("h1", "h7", "h11", "h12")  # no vector for h16
        ],
        posting_embeddings: [
            {"posting_id": 1, "model": MODEL, "text_hash": "h1", "is_current": True, "updated_at": RECENT},
            {"posting_id": 7, "model": MODEL, "text_hash": "h7", "is_current": True, "updated_at": RECENT},
            {"posting_id": 11, "model": MODEL, "text_hash": "h11", "is_current": False, "updated_at": RECENT},
            {"posting_id": 12, "model": MODEL, "text_hash": "h12", "is_current": True, "updated_at": OLD},
            {"posting_id": 16, "model": MODEL, "text_hash": "h16", "is_current": True, "updated_at": RECENT},
        ],
        demand_snapshots: [
            {"snapshot_date": day, "state": "Bayern", "domain_code": "81", "total_postings": 3, "fresh_7d": 1,
             "fresh_14d": 2, "computed_at": at}
            for day, at in ((D0, RECENT), (D2, OLD), (D10, RECENT))
        ],
    }
    with engine.begin() as conn:
        for table, values in rows.items():
            for row in values:  # one by one: the rows do not all name the same columns
                conn.execute(table.insert().values(row))


def run_json(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    monkeypatch.setattr(cli, "utcnow_aware", lambda: NOW_AWARE)
    assert cli.main(["status", "--json", "--warehouse-url", url, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def counts(asset: dict, day: date) -> tuple[int, int, int, int, int]:
    """(done, failed for good, retryable, pending, total) of one partition."""
    row = next(p for p in asset["partitions"] if p["partition"] == day.isoformat())
    return row["done"], row["failed"], row["retryable"], row["pending"], row["total"]


@pytest.fixture
def seeded(warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("TY_LLM_SOURCES", raising=False)
    seed(warehouse_url)
    return warehouse_url


# -- exact counts, both backends --------------------------------------------------------------------------


def test_partitions_are_the_recent_days_newest_first(seeded: str, monkeypatch, capsys) -> None:
    report = run_json(seeded, monkeypatch, capsys, "--days", "3")
    assert report["today"] == "2026-11-18"
    for name in ASSETS:
        assert [p["partition"] for p in report["assets"][name]["partitions"]] == ["2026-11-18", "2026-11-17", "2026-11-16"]
    # D10 is outside the window: 10 + 4 + 2 postings, not 17
    assert report["assets"]["postings"]["totals"]["total"] == 16


def test_postings_counts_every_fetched_posting(seeded: str, monkeypatch, capsys) -> None:
    asset = run_json(seeded, monkeypatch, capsys)["assets"]["postings"]
    assert counts(asset, D0) == (10, 0, 0, 0, 10)
    assert counts(asset, D1) == (4, 0, 0, 0, 4)
    assert counts(asset, D0 - timedelta(days=3)) == (0, 0, 0, 0, 0)
    assert asset["partitions"][0]["by_status"] == {"invalidated": 2, "valid": 8}
    assert asset["throughput"]["finished"] == 10  # first seen in the last 3 h: the D0 postings


def test_descriptions_classify_every_status_over_valid_postings(seeded: str, monkeypatch, capsys) -> None:
    asset = run_json(seeded, monkeypatch, capsys)["assets"]["job_descriptions"]
    # D0 valid: 1 ok, 2 too_short, 3 external, 7 ok, 8 ok = done 5; 9 gave_up = failed; 4 failed once =
    # retryable; 5 no row = pending
    assert counts(asset, D0) == (5, 1, 1, 1, 8)
    assert asset["partitions"][0]["by_status"] == {
        "external_partner": 1, "failed": 1, "gave_up": 1, "no_row": 1, "ok": 3, "too_short": 1,
    }
    # D1: 11, 12, 14 ok; 13 failed twice = attempts used up
    assert counts(asset, D1) == (3, 1, 0, 0, 4)
    assert asset["partitions"][1]["by_status"]["failed (attempts used up)"] == 1
    assert counts(asset, D2) == (1, 0, 0, 1, 2)
    assert asset["totals"] == {
        "done": 9, "failed": 2, "retryable": 1, "pending": 2, "total": 14,
        "by_status": {"external_partner": 1, "failed": 1, "failed (attempts used up)": 1, "gave_up": 1,
                      "no_row": 2, "ok": 7, "too_short": 1},
    }
    # finished in the window: 1, 2, 6, 7, 8, 9, 13, 14, 16, 17 (not 4: retryable; not 3, 10, 11, 12: old)
    assert asset["throughput"] == {"finished": 10, "window_hours": 3.0, "per_hour": 3.33}
    # D0 is today (the nightly run's), D1 and D2 had rows written in the window: all three are being processed
    assert asset["active_partitions"] == [D2.isoformat(), D1.isoformat(), D0.isoformat()]
    assert asset["pending_scheduled"] == 2 and asset["pending_unscheduled"] == 0
    assert asset["eta_seconds"] == pytest.approx(2 * 3600 * 3 / 10)  # 2 pending (5, 15) at 10 per 3 h; 4 is retryable
    assert asset["eta"] == (
        "ETA 36 min for 2 pending in partitions being processed; "
        "no ETA for 1 retryable (retried only when their partition runs again)"
    )


def test_llm_assets_cover_valid_postings_of_llm_sources_with_a_description(seeded: str, monkeypatch, capsys) -> None:
    assets = run_json(seeded, monkeypatch, capsys)["assets"]
    # scope: deutsche_bank, valid, description ok -> D0: 7, 8 (9 gave up, 10 invalidated); D1: 12, 14
    summaries, skills, ihl = assets["posting_summaries"], assets["skill_keywords"], assets["ihl_scores"]
    assert counts(summaries, D0) == (1, 1, 0, 0, 2)
    assert counts(summaries, D1) == (1, 0, 1, 0, 2)  # 14: llm_error with an attempt left
    assert counts(summaries, D2) == (0, 0, 0, 0, 0)
    assert counts(skills, D0) == (1, 1, 0, 0, 2)  # 8: llm_error after the last attempt
    assert counts(skills, D1) == (1, 0, 0, 1, 2)  # 14: no row
    assert counts(ihl, D0) == (0, 0, 1, 1, 2)  # 7: llm_error with attempts left; 8: no row
    assert counts(ihl, D1) == (1, 0, 0, 1, 2)
    # finished in the window: summaries 1, 7, 8, 10 (any source, any partition); 14 is retryable
    assert summaries["throughput"]["finished"] == 4
    # Nothing pending: the retryable 14 waits for a run of D1, which nothing has scheduled
    assert summaries["eta_seconds"] is None
    assert summaries["eta"] == "no ETA for 1 retryable (retried only when their partition runs again)"
    # skills: 14 is pending in D1, whose rows are all old: no run is on it, so no ETA despite the throughput
    assert skills["throughput"]["finished"] == 2 and skills["eta_seconds"] is None
    assert skills["pending_unscheduled"] == 1
    assert ihl["throughput"]["finished"] == 0
    assert ihl["eta_seconds"] is None
    assert ihl["eta"] == (
        "1 pending in today's partition wait for the nightly run (23:30 Europe/Berlin); "
        "no ETA for 1 pending in older partitions no run is working on (materialize those partitions to process "
        "them); no ETA for 1 retryable (retried only when their partition runs again)"
    )


def test_llm_scope_follows_ty_llm_sources(seeded: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TY_LLM_SOURCES", "arbeitsagentur, deutsche_bank")
    report = run_json(seeded, monkeypatch, capsys)
    assert report["llm_sources"] == [AA, DB]
    # D0 adds posting 1 (passed summary); 2 too_short, 3 partner, 4 and 5 without text stay out
    assert counts(report["assets"]["posting_summaries"], D0) == (2, 1, 0, 0, 3)
    # D1 adds 11 (no summary yet); D2 adds 16
    assert counts(report["assets"]["posting_summaries"], D1) == (1, 0, 1, 1, 3)
    assert counts(report["assets"]["posting_summaries"], D2) == (0, 0, 0, 1, 1)


def test_embeddings_count_eligible_postings_with_a_current_stored_vector(seeded: str, monkeypatch, capsys) -> None:
    asset = run_json(seeded, monkeypatch, capsys)["assets"]["posting_embeddings"]
    # D0 eligible: 1, 7, 8 (2 too short, 3/4/5/9 without text, 6/10 invalidated); 1 and 7 embedded
    assert counts(asset, D0) == (2, 0, 0, 1, 3)
    # D1: 11 (link retired) pending, 12 embedded; 14's padded text normalises under 150: not eligible
    assert counts(asset, D1) == (1, 0, 0, 1, 2)
    # D2: 16's current link points at a vector that is not stored
    assert counts(asset, D2) == (0, 0, 0, 1, 1)
    assert asset["throughput"]["finished"] == 3  # current links written recently: 1, 7, 16


def test_berufenet_counts_the_mappers_vocabulary(seeded: str, monkeypatch, capsys) -> None:
    asset = run_json(seeded, monkeypatch, capsys)["assets"]["berufenet_mappings"]
    # D0 valid with a title: 1 exact; 2 no_match and 9 no_title final; 3 error (retryable), 7, 8 (no row)
    assert counts(asset, D0) == (1, 2, 1, 2, 6)
    assert counts(asset, D1) == (1, 0, 0, 3, 4)  # 12 learned
    assert counts(asset, D2) == (0, 0, 0, 2, 2)  # 15 has no title but a beruf label
    assert asset["throughput"]["finished"] == 3  # 1, 2, 9; 3 is retryable, 12 is old


def test_unknown_status_words_count_as_pending_and_are_named(seeded: str, monkeypatch, capsys) -> None:
    with get_engine(seeded).begin() as conn:
        conn.execute(berufenet_mappings.insert().values(posting_id=11, status="a_word_added_later", updated_at=RECENT))
    asset = run_json(seeded, monkeypatch, capsys)["assets"]["berufenet_mappings"]
    assert counts(asset, D1) == (1, 0, 0, 3, 4)
    assert asset["partitions"][1]["by_status"]["a_word_added_later (unknown status)"] == 1
    assert cli.main(["status", "--warehouse-url", seeded, "--asset", "berufenet_mappings"]) == 0
    assert "counted as pending: a_word_added_later (1)" in capsys.readouterr().out


def test_demand_snapshots_are_one_unit_per_date(seeded: str, monkeypatch, capsys) -> None:
    asset = run_json(seeded, monkeypatch, capsys)["assets"]["demand_snapshots"]
    assert counts(asset, D0) == (1, 0, 0, 0, 1)
    assert counts(asset, D1) == (0, 0, 0, 1, 1)
    assert counts(asset, D2) == (1, 0, 0, 0, 1)
    # D3..D6 have no postings: nothing to snapshot, so not pending
    assert counts(asset, D0 - timedelta(days=3)) == (0, 0, 0, 0, 0)
    assert asset["totals"]["done"] == 2 and asset["totals"]["pending"] == 1
    assert asset["throughput"]["finished"] == 2  # D0 and D10 computed recently
    # D1's snapshot was never requested: throughput elsewhere gives it no ETA
    assert asset["eta_seconds"] is None and asset["pending_unscheduled"] == 1
    assert asset["unit"] == "snapshots"


def test_asset_filter_and_text_output(seeded: str, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "utcnow_aware", lambda: NOW_AWARE)
    assert cli.main(["status", "--warehouse-url", seeded, "--asset", "job_descriptions", "--asset", "ihl_scores"]) == 0
    text = capsys.readouterr().out
    assert "posting_summaries" not in text and "demand_snapshots" not in text
    lines = text.splitlines()
    header = lines.index("job_descriptions - non-invalidated postings")
    assert lines[header + 1].split() == ["partition", "done", "failed", "retryable", "pending", "total"]
    assert lines[header + 2].split() == ["2026-11-18", "5", "1", "1", "1", "8"]  # newest first
    assert lines[header + 3].split() == ["2026-11-17", "3", "1", "0", "0", "4"]
    assert "  all" in text and ["all", "9", "2", "1", "2", "14"] in [line.split() for line in lines]
    assert (
        "job_descriptions: 9 of 14 done (64%), 2 failed, 1 retryable, 2 pending; 10 postings finished in the "
        "last 3 h (3.3/h); ETA 36 min for 2 pending in partitions being processed; no ETA for 1 retryable "
        "(retried only when their partition runs again)"
    ) in lines
    assert any(line.startswith("ihl_scores: ") and "wait for the nightly run" in line for line in lines)
    assert "\x1b[" not in text  # no colour codes


def test_no_eta_for_work_no_job_will_do(warehouse_url: str, monkeypatch, capsys) -> None:
    """Issue #12 item 5: errored mappings nothing retries, days without postings and a snapshot never
    requested get no ETA, although both assets finished other work recently; retryable and terminal
    failures are separate columns."""
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(postings.insert(), [_posting(21, AA, D2), _posting(22, AA, D2), _posting(23, AA, D2),
                                         _posting(24, AA, D10)])
        conn.execute(berufenet_mappings.insert(), [
            {"posting_id": 21, "status": "error", "updated_at": OLD},
            {"posting_id": 22, "status": "error", "updated_at": OLD},
            {"posting_id": 23, "status": "no_match", "updated_at": OLD},
            # recent work outside the shown days: a rate an ETA could be extrapolated from
            {"posting_id": 24, "status": "exact", "berufenet_id": "B1", "kldb": "81302", "updated_at": RECENT},
        ])
        conn.execute(demand_snapshots.insert().values(
            snapshot_date=D10, state="Bayern", domain_code="81", total_postings=1, fresh_7d=1, fresh_14d=1,
            computed_at=RECENT))
    monkeypatch.setattr(cli, "utcnow_aware", lambda: NOW_AWARE)
    assert cli.main(["status", "--warehouse-url", warehouse_url,
                     "--asset", "berufenet_mappings", "--asset", "demand_snapshots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  2026-")}
    assert lines[lines.index("berufenet_mappings - " + str(ASSETS["berufenet_mappings"].scope)) + 4].split() == [
        D2.isoformat(), "0", "1", "2", "0", "3"]  # done, failed for good, retryable, pending, total
    # snapshots: only D2 has postings, so only D2 misses a snapshot; the other days are not pending
    assert rows[D0.isoformat()] == ["0", "0", "0", "0", "0"] and rows[D2.isoformat()] == ["0", "0", "0", "1", "1"]
    summaries = [line for line in lines if line.startswith(("berufenet_mappings:", "demand_snapshots:"))]
    assert len(summaries) == 2 and not any(re.search(r"ETA \d", line) for line in summaries), summaries
    assert summaries[0].endswith("no ETA for 2 retryable (retried only when their partition runs again)")
    assert "1 finished in the last" not in summaries[0] and "1 postings finished in the last 3 h" in summaries[0]
    assert summaries[1].endswith(
        "no ETA for 1 pending in older partitions no run is working on (materialize those partitions to process them)")


# -- unbuilt and missing warehouses -----------------------------------------------------------------------


def test_tables_that_do_not_exist_are_reported_not_built(warehouse_url: str, monkeypatch, capsys) -> None:
    engine = get_engine(warehouse_url)
    metadata.create_all(engine, tables=[postings, job_descriptions])
    with engine.begin() as conn:
        conn.execute(postings.insert(), [_posting(1, AA, D0), _posting(2, AA, D0)])
        conn.execute(job_descriptions.insert(), [_description(1, "ok", text=LONG)])
    report = run_json(warehouse_url, monkeypatch, capsys)
    assets = report["assets"]
    assert counts(assets["job_descriptions"], D0) == (1, 0, 0, 1, 2)
    assert assets["posting_summaries"]["built"] is False
    assert assets["posting_summaries"]["missing_tables"] == ["posting_summaries"]
    assert assets["posting_embeddings"]["missing_tables"] == ["posting_embeddings", "posting_summaries", "embeddings"]
    assert assets["demand_snapshots"]["eta"] == "not built"

    assert cli.main(["status", "--warehouse-url", warehouse_url]) == 0
    assert "demand_snapshots: not built (missing table demand_snapshots)" in capsys.readouterr().out


def test_missing_sqlite_file_is_not_created(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "nowhere" / "warehouse.sqlite"
    report = run_json(f"sqlite:///{path}", monkeypatch, capsys)
    assert all(not a["built"] for a in report["assets"].values())
    assert not path.exists() and not path.parent.exists()


def test_unreachable_warehouse_exits_2(monkeypatch, capsys) -> None:
    url = "postgresql://nobody@127.0.0.1:9/none"  # discard port: connection refused at once
    assert cli.main(["status", "--warehouse-url", url]) == 2
    assert "cannot read the warehouse" in capsys.readouterr().err


def test_warehouse_url_defaults_to_the_environment(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "env.sqlite"
    engine = get_engine(f"sqlite:///{path}")
    metadata.create_all(engine, tables=[postings])
    with engine.begin() as conn:
        conn.execute(postings.insert(), [_posting(1, AA, D0)])
    monkeypatch.setenv("TY_WAREHOUSE_URL", f"sqlite:///{path}")
    monkeypatch.setattr(cli, "utcnow_aware", lambda: NOW_AWARE)
    assert cli.main(["status", "--json", "--asset", "postings"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["warehouse"] == f"sqlite:///{path}"
    assert report["assets"]["postings"]["totals"]["total"] == 1


def test_bad_options_are_rejected(capsys) -> None:
    for argv in (["status", "--days", "0"], ["status", "--asset", "nonsense"], ["status", "--window-hours", "-1"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2


# -- pure rules -------------------------------------------------------------------------------------------


def test_eta_is_pending_over_recent_rate() -> None:
    assert eta_seconds(3, 10, 3.0) == pytest.approx(3240.0)  # 10 per 3 h = 1 per 1080 s
    assert eta_seconds(100, 50, 1.0) == pytest.approx(7200.0)
    assert eta_seconds(0, 0, 3.0) == 0.0
    assert eta_seconds(5, 0, 3.0) is None
    assert describe_eta(5, 0, 3.0) == "no recent throughput"
    assert describe_eta(0, 7, 3.0) == "nothing pending"
    assert describe_eta(100, 50, 1.0) == "ETA 2 h"


def test_durations_read_coarsely() -> None:
    assert format_duration(59) == "under a minute"
    assert format_duration(61) == "2 min"
    assert format_duration(3240) == "54 min"
    assert format_duration(3600 + 30 * 60) == "1 h 30 min"
    assert format_duration(3 * 86400 + 5 * 3600) == "3 d 5 h"


def test_registry_classification() -> None:
    descriptions, summaries = ASSETS["job_descriptions"], ASSETS["posting_summaries"]
    assert descriptions.classify(None) == Outcome.PENDING
    assert descriptions.classify("failed") == Outcome.RETRYABLE
    assert descriptions.classify("failed", exhausted=True) == Outcome.FAILED
    assert descriptions.classify("too_short") == Outcome.DONE
    assert summaries.classify("failed_grading") == Outcome.FAILED
    assert summaries.classify("a_new_word") == Outcome.PENDING  # unknown words are never "done"
    beruf = ASSETS["berufenet_mappings"]
    assert beruf.classify("embedding_high") == Outcome.DONE
    assert beruf.classify("llm_rejected") == Outcome.FAILED
    assert beruf.classify("llm_unavailable") == Outcome.RETRYABLE
    assert beruf.classify("error") == Outcome.RETRYABLE


def test_llm_sources_reads_the_environment_like_the_llm_assets() -> None:
    assert llm_sources({}) == (DB,)
    assert llm_sources({"TY_LLM_SOURCES": ""}) == (DB,)
    assert llm_sources({"TY_LLM_SOURCES": " Arbeitsagentur ,deutsche_bank,"}) == (AA, DB)


# -- LLM hosts: postings/hour per host and the night's ETA --------------------------------------------------


def test_llm_hosts_show_their_measured_rate_and_the_pending_work_against_six_in_the_morning(
    seeded: str, monkeypatch, capsys
) -> None:
    from ty_pipeline.domain.llm_capacity import HostRun, RunThroughput
    from ty_pipeline.warehouse.llm_throughput_store import record_run

    engine = get_engine(seeded)
    before = run_json(seeded, monkeypatch, capsys)["llm_capacity"]
    assert before["hosts"] == [] and before["postings_per_hour"] is None
    assert "no measured run yet, no ETA" in before["eta"]
    # Two hours of a night: 1,400 postings, three quarters of the calls on the 32-slot host.
    hosts = (HostRun("http://gpu1:8000", 32, 7350, 60000.0), HostRun("http://gpu2:8000", 8, 2450, 15000.0))
    record_run(engine, run_id="r1", day=D0, run=RunThroughput(NOW - timedelta(hours=1), 7200.0, 1400.0, hosts))
    capacity = run_json(seeded, monkeypatch, capsys)["llm_capacity"]
    assert capacity["postings_per_hour"] == 700.0
    assert [(h["host"], h["postings_per_hour"]) for h in capacity["hosts"]] == [
        ("http://gpu1:8000", 525.0), ("http://gpu2:8000", 175.0)]
    pending = capacity["pending_postings"]
    assert pending > 0 and capacity["before_deadline"] is True  # a few postings, 8 h until 06:00 Berlin
    assert capacity["hours_left"] == 8.0
    monkeypatch.setattr(cli, "utcnow_aware", lambda: NOW_AWARE)
    assert cli.main(["status", "--warehouse-url", seeded]) == 0
    text = capsys.readouterr().out
    assert "LLM hosts (last 1 of up to 7 enrichment runs)" in text
    assert "all hosts: 700 postings/h" in text and "before the 06:00 deadline (8 h 00 min left)" in text
