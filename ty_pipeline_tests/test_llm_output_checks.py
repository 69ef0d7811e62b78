"""The LLM-output checks read the partition's saved rows and name the offending postings."""

from __future__ import annotations

import json
from datetime import date, datetime

import dagster as dg
import sqlalchemy as sa

from ty_pipeline.checks.llm_outputs import build_llm_output_checks
from ty_pipeline.domain.posting_record import PostingRecord, Source
from ty_pipeline.partitions import daily_partitions
from ty_pipeline.resources.llm_scope import LlmScopeResource
from ty_pipeline.resources.warehouse import WarehouseResource
from ty_pipeline.warehouse.engine import ensure_schema, get_engine
from ty_pipeline.warehouse.postings_store import upsert_postings
from ty_pipeline.warehouse.schema import ihl_scores, posting_summaries, postings, skill_keywords

DAY = date(2026, 11, 18)
NOW = datetime(2026, 11, 18, 23, 0)
SUMMARY = ("**Role:** Data Engineer\n**Company:** Deutsche Bank\n**Location:** Frankfurt am Main\n"
           "**Key Responsibilities:**\n- Build payment data pipelines\n- Operate Kafka streams\n- Review code\n"
           "**Requirements:**\n- Computer science degree\n- Five years of Spark\n- Fluent German and English")


def _noop(name: str) -> dg.AssetsDefinition:
    """Stand-in for an LLM asset whose rows the test writes itself; the checks read the warehouse."""

    @dg.asset(name=name, partitions_def=daily_partitions)
    def _asset() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    return _asset


def run_checks(url: str) -> dict[str, dg.AssetCheckEvaluation]:
    assets = [_noop(k) for k in ("posting_summaries", "skill_keywords", "ihl_scores")]
    result = dg.materialize([*assets, *build_llm_output_checks()], partition_key=DAY.isoformat(),
                            resources={"warehouse": WarehouseResource(url=url), "llm_scope": LlmScopeResource()},
                            raise_on_error=False)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_pass_on_sane_rows_and_name_the_offenders(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    upsert_postings(engine, [PostingRecord(source=Source.DEUTSCHE_BANK, external_id=str(i), title=f"T{i}")
                             for i in range(4)], partition_date=DAY, now=NOW)
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(postings.c.posting_id).order_by(postings.c.posting_id))]
        for n, pid in enumerate(ids[:2]):
            conn.execute(posting_summaries.insert().values(
                posting_id=pid, status="passed", summary=SUMMARY.replace("Review code", f"Review code {n}"),
                updated_at=NOW))
            conn.execute(skill_keywords.insert().values(posting_id=pid, status="ok", skills_json=json.dumps(["Spark", "Kafka"]), updated_at=NOW))
            conn.execute(ihl_scores.insert().values(posting_id=pid, status="ok", ihl_score=3 + n, ihl_category="GENUINE" if n == 0 else "BORDERLINE", updated_at=NOW))
    ok = run_checks(warehouse_url)
    assert all(e.passed for e in ok.values()), {k: e.metadata for k, e in ok.items()}

    with engine.begin() as conn:
        conn.execute(posting_summaries.insert().values(posting_id=ids[2], status="passed", summary=SUMMARY + " work" * 300, updated_at=NOW))
        conn.execute(skill_keywords.insert().values(posting_id=ids[2], status="ok", skills_json='["Spark", "spark"]', updated_at=NOW))
        conn.execute(ihl_scores.insert().values(posting_id=ids[2], status="ok", ihl_score=9, ihl_category="GENUINE", updated_at=NOW))
    bad = run_checks(warehouse_url)
    what = {"no_degenerate_summaries": "summaries", "skill_lists_well_formed": "skill lists",
            "ihl_scores_consistent": "IHL scores"}
    for name in ("no_degenerate_summaries", "skill_lists_well_formed", "ihl_scores_consistent"):
        assert not bad[name].passed, name
        examples = bad[name].metadata["example_posting_ids"].value
        assert ids[2] in {pid for found in examples.values() for pid in found}
        # The reason and the table an operator reads in the UI: which posting (id, source id, title) and why.
        reason = bad[name].metadata["reason"].value
        assert reason.startswith(f"1 of 3 saved {what[name]} of {DAY} are flagged (expected 0): "), reason
        assert bad[name].description == reason
        table = bad[name].metadata["examples"].value
        assert "| posting_id | external_id | title | problem |" in table
        assert f"| {ids[2]} | deutsche_bank:2 | T2 |" in table and "T0" not in table


def test_only_the_summary_check_blocks_downstream() -> None:
    blocking = {spec.name: spec.blocking for check in build_llm_output_checks() for spec in check.check_specs}
    assert blocking == {"no_degenerate_summaries": True, "skill_lists_well_formed": False,
                        "ihl_scores_consistent": False, "summaries_complete": False,
                        "skill_keywords_complete": False, "ihl_scores_complete": False}
