"""Schedule and new-fetch sensor: what they request, and that they stay idempotent."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from ty_pipeline import defs
from ty_pipeline.automation.jobs import ENRICHMENT_JOB_NAME, NIGHTLY_JOB_NAME
from ty_pipeline.domain.clock import BERLIN


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


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_sensor_skip_reasons_say_why_nothing_was_requested() -> None:
    """The tick history shows the skip reason: each path names the partition and what made it skip."""
    sensor = defs.get_sensor_def("new_postings_sensor")
    with dg.instance_for_test() as instance:
        assert _tick(sensor, instance).skip_message == "no new postings since the last tick (no `postings` materialization)"

        _report(instance, "2026-11-20", 0)
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="postings", metadata={"new": 4}))
        skipped = _tick(sensor, instance)
        assert not skipped.run_requests
        assert skipped.skip_message == (
            "2026-11-20 fetched no new postings; a `postings` materialization without a partition (nothing to enrich)"
        )

        # More than fit in one cell: the first ten, and how many more.
        for day in range(1, 13):
            _report(instance, f"2026-10-{day:02d}", 0)
        crowded = _tick(sensor, instance, skipped.cursor)
        assert (crowded.skip_message or "").startswith("2026-10-01 fetched no new postings; 2026-10-02")
        assert (crowded.skip_message or "").endswith("2026-10-10 fetched no new postings; and 2 more")


def test_sensor_skips_a_day_the_nightly_run_already_enriched() -> None:
    @dg.asset(name="postings", partitions_def=dg.DailyPartitionsDefinition(start_date="2026-11-01"))
    def fetched() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"new": 3})

    nightly = dg.Definitions(assets=[fetched], jobs=[dg.define_asset_job(NIGHTLY_JOB_NAME)]).resolve_job_def(
        NIGHTLY_JOB_NAME
    )
    sensor = defs.get_sensor_def("new_postings_sensor")
    with dg.instance_for_test() as instance:
        assert nightly.execute_in_process(instance=instance, partition_key="2026-11-22").success
        result = _tick(sensor, instance)
        assert not result.run_requests
        assert result.skip_message == "2026-11-22 already enriched by the nightly run"


def _requested(instance: dg.DagsterInstance, cursor: object = None) -> tuple[set[str], object]:
    result = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=cursor,
        asset_selection=dg.AssetSelection.assets("berufenet_catalog", "profession_similarity"),
    )
    requested = {name for name in ("berufenet_catalog", "profession_similarity")
                 if result.get_num_requested(dg.AssetKey(name))}
    return requested, result.cursor


def test_a_catalog_missing_when_the_sensor_first_runs_is_built_once() -> None:
    """A fresh install: the catalog is missing at the first evaluation and is requested then, once, with the
    similarity that follows from it in the same run."""
    with dg.instance_for_test() as instance:
        requested, cursor = _requested(instance)
        assert requested == {"berufenet_catalog", "profession_similarity"}
        requested, cursor = _requested(instance, cursor)
        assert requested == set()  # not asked again while that request is pending


def _requested_after(instance: dg.DagsterInstance, cursor: object, built: str) -> tuple[set[str], object]:
    """What the next evaluation requests once `built` has been materialized."""
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=built))
    return _requested(instance, cursor)


def test_profession_similarity_is_rebuilt_after_the_catalog_changes() -> None:
    with dg.instance_for_test() as instance:
        _, cursor = _requested(instance)  # a fresh install: both, in one run (test above)
        for _change in range(2):  # twice: each catalog change asks for exactly one rebuild, not only the first
            # Built: nothing until the catalog changes again.
            requested, cursor = _requested_after(instance, cursor, "profession_similarity")
            assert requested == set()
            requested, cursor = _requested_after(instance, cursor, "berufenet_catalog")
            assert requested == {"profession_similarity"}


def test_a_similarity_missing_beside_an_existing_catalog_is_built_once() -> None:
    """A warehouse whose catalog was built before the condition existed: requested at the first evaluation,
    not again while the run is pending its result."""
    with dg.instance_for_test() as instance:
        requested, cursor = _requested_after(instance, None, "berufenet_catalog")
        assert requested == {"profession_similarity"}
        requested, cursor = _requested(instance, cursor)
        assert requested == set()
