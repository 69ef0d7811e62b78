"""The pipeline's one clock: wall-clock time in UTC, and the calendar in Europe/Berlin.

Partitions, snapshot days and the status CLI count days in Europe/Berlin. Timestamps are stored as naive
UTC (`utcnow`): SQLite keeps no zone, so PostgreSQL gets the same naive values and comparisons work the
same on both. Durations are measured with `time.monotonic`, never with this clock.

Dagster-free, so the warehouse and the CLI can use the zone without importing the partition definitions
(`ty_pipeline.partitions`, which builds the Dagster `DailyPartitionsDefinition` from `TIMEZONE`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

TIMEZONE = "Europe/Berlin"
BERLIN = ZoneInfo(TIMEZONE)


def utcnow_aware() -> datetime:
    """Now, aware UTC: for arithmetic with aware times (an HTTP date, the Berlin calendar)."""
    return datetime.now(UTC)


def utcnow() -> datetime:
    """Now, naive UTC: how the warehouse stores every timestamp."""
    return utcnow_aware().replace(tzinfo=None)


def berlin_today(now: datetime | None = None) -> date:
    return (now or utcnow_aware()).astimezone(BERLIN).date()
