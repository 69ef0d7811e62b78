"""The one clock (issue #10 item 3): naive UTC for the warehouse, aware UTC for arithmetic, Berlin days,
and no other module reading the wall clock by itself."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta

from ty_pipeline.domain.clock import BERLIN, berlin_today, utcnow, utcnow_aware
from ty_pipeline_tests.paths import REPO_ROOT


def test_utcnow_is_naive_utc_and_the_aware_variant_agrees() -> None:
    naive, aware = utcnow(), utcnow_aware()
    assert naive.tzinfo is None and aware.tzinfo is UTC
    assert abs(aware.replace(tzinfo=None) - naive) < timedelta(seconds=5)
    assert abs(aware - datetime.now(UTC)) < timedelta(seconds=5)


def test_berlin_today_counts_days_in_berlin() -> None:
    assert str(berlin_today(datetime(2026, 11, 18, 22, 30, tzinfo=UTC))) == "2026-11-18"  # 23:30 in Berlin
    assert str(berlin_today(datetime(2026, 11, 18, 23, 30, tzinfo=UTC))) == "2026-11-19"  # 00:30 in Berlin
    assert BERLIN.key == "Europe/Berlin"


WALL_CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("time", "time")}


def test_only_the_clock_module_reads_the_wall_clock() -> None:
    """`datetime.now()` and friends outside domain/clock.py are how two clocks came about (a naive local
    time here, an aware UTC there); durations use `time.monotonic`, which this does not count."""
    clock = REPO_ROOT / "ty_pipeline" / "domain" / "clock.py"
    readers = []
    for path in sorted((REPO_ROOT / "ty_pipeline").rglob("*.py")):
        if path == clock:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and (node.value.id, node.attr) in WALL_CLOCK_READS):
                readers.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert readers == []
