"""The pipeline's calendar: partitions, snapshot days and the status CLI count days in Europe/Berlin.

Dagster-free, so the warehouse and the CLI can use the zone without importing the partition definitions
(`ty_pipeline.partitions`, which builds the Dagster `DailyPartitionsDefinition` from `TIMEZONE`).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

TIMEZONE = "Europe/Berlin"
BERLIN = ZoneInfo(TIMEZONE)


def berlin_today(now: datetime | None = None) -> date:
    return (now or datetime.now(BERLIN)).astimezone(BERLIN).date()
