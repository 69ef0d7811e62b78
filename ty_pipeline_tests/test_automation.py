"""Schedule and new-fetch sensor: what they request, and that they stay idempotent."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg

from ty_pipeline import defs
from ty_pipeline.automation.jobs import ENRICHMENT_JOB_NAME, NIGHTLY_JOB_NAME

BERLIN = ZoneInfo("Europe/Berlin")


def test_nightly_schedule_targets_the_day_that_is_ending() -> None:
    schedule = defs.get_schedule_def("nightly_pipeline_schedule")
    assert schedule.execution_timezone == "Europe/Berlin" and schedule.cron_schedule == "30 23 * * *"
    assert schedule.job_name == NIGHTLY_JOB_NAME
    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 22, 23, 30, tzinfo=BERLIN))
    result = schedule.evaluate_tick(ctx)
    assert [r.partition_key for r in result.run_requests or []] == ["2026-11-22"]


def test_enrichment_job_excludes_postings_and_nightly_includes_everything() -> None:
    nightly = defs.resolve_job_def(NIGHTLY_JOB_NAME)
    enrich = defs.resolve_job_def(ENRICHMENT_JOB_NAME)
    nightly_keys = {k.to_user_string() for k in nightly.asset_layer.executable_asset_keys}
    enrich_keys = {k.to_user_string() for k in enrich.asset_layer.executable_asset_keys}
    assert {"postings", "job_descriptions"} <= nightly_keys
    assert "postings" not in enrich_keys and "job_descriptions" in enrich_keys


def _report(instance: dg.DagsterInstance, partition: str, new: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="postings", partition=partition, metadata={"new": new})
    )


def test_sensor_requests_enrichment_only_for_partitions_with_new_postings() -> None:
    sensor = defs.get_sensor_def("new_postings_sensor")
    with dg.instance_for_test() as instance:
        empty = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not empty.run_requests and "no new" in (empty.skip_message or "")

        _report(instance, "2026-11-20", 0)
        _report(instance, "2026-11-21", 7)
        _report(instance, "2026-11-15", 2)  # a late arrival for an older day
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert sorted(r.partition_key for r in first.run_requests) == ["2026-11-15", "2026-11-21"]
        assert len({r.run_key for r in first.run_requests}) == 2

        # Same cursor again: nothing new, nothing requested twice.
        again = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs)
        )
        assert not again.run_requests
        assert again.cursor in (None, first.cursor) or int(again.cursor) >= int(first.cursor)
