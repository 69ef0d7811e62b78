"""Daily partitions by publication date (Europe/Berlin), shared by every partitioned asset."""

from __future__ import annotations

import warnings
from datetime import date

import dagster as dg

from ty_pipeline.domain.clock import TIMEZONE

# Per-partition asset checks are a preview in Dagster 1.13 and warn once per check definition, a
# dozen lines before every CLI command. We depend on them deliberately (checks must say which day
# failed) and pin dagster exactly, so a breaking change arrives with a reviewed upgrade, not silently.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)

# end_offset=1 makes today's partition available: the nightly run fetches the day that is ending.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone=TIMEZONE, end_offset=1)


def partition_date(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)
