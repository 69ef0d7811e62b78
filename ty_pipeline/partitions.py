"""Daily partitions by publication date (Europe/Berlin), shared by every partitioned asset."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg

TIMEZONE = "Europe/Berlin"
BERLIN = ZoneInfo(TIMEZONE)

# end_offset=1 makes today's partition available: the nightly run fetches the day that is ending.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone=TIMEZONE, end_offset=1)


def berlin_today(now: datetime | None = None) -> date:
    return (now or datetime.now(BERLIN)).astimezone(BERLIN).date()


def partition_date(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)
