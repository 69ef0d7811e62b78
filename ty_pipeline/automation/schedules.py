"""The nightly schedule: late evening in Berlin, the day's partition of the whole pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    # What `build_schedule_from_partitioned_job` returns for an asset job; dagster does not export the name.
    from dagster._core.definitions.partitions.partitioned_schedule import (
        UnresolvedPartitionedAssetScheduleDefinition,
    )


def build_nightly_schedule(
    nightly_job: dg.UnresolvedAssetJobDefinition,
) -> UnresolvedPartitionedAssetScheduleDefinition | dg.ScheduleDefinition:
    # 23:30 Berlin: the day is nearly over, and today's partition exists because the partitions
    # definition has end_offset=1. Built from the partitioned job, so each tick targets that day.
    return dg.build_schedule_from_partitioned_job(
        nightly_job,
        hour_of_day=23,
        minute_of_hour=30,
        name="nightly_pipeline_schedule",
        description="Every night at 23:30 Europe/Berlin: fetch and enrich the day's postings.",
    )
