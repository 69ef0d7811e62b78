"""`ty-pipeline`: operator commands that answer from the warehouse without starting Dagster.

`ty-pipeline status` says, per asset and recent partition, how much is done, failed for good, failed but
retryable, or still pending, and when the pending work a job will do (today's partition, partitions a run
is working on) will be finished at the pace of the last hours. Work no job will do gets no ETA. The Dagster UI shows
whether a partition's run succeeded; it cannot show that a "successful" run left 3,000 postings without
a summary because the per-run cap was hit. That gap is what this command closes.

Run it as `ty-pipeline status` (console script) or `python -m ty_pipeline.cli status`. `ty-pipeline migrate`
upgrades the warehouse schema (the one command here that writes).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ty_pipeline.cli_llm_capacity import llm_capacity, render_llm_capacity
from ty_pipeline.cli_pools import (
    add_dagster_home_argument,
    add_free_slots_command,
    pool_slots,
    render_pool_slots,
    run_free_slots,
)
from ty_pipeline.domain.clock import berlin_today, utcnow_aware  # partitions are Berlin days
from ty_pipeline.domain.llm_scope import LLM_SOURCES_ENV, default_llm_sources
from ty_pipeline.domain.setting_values import WAREHOUSE_URL, SettingError, check_warehouse_url
from ty_pipeline.domain.status_registry import ASSETS, Tally, llm_sources
from ty_pipeline.domain.urls import redact_url
from ty_pipeline.settings_check import check_environment
from ty_pipeline.warehouse.engine import DEFAULT_WAREHOUSE_URL, get_engine
from ty_pipeline.warehouse.errors import describe_db_error
from ty_pipeline.warehouse.migrations import UnknownRevisionError, upgrade_to_head
from ty_pipeline.warehouse.status_queries import UNKNOWN_MARK, AssetStatus, StatusReport, collect_status

DEFAULT_DAYS = 7
DEFAULT_WINDOW_HOURS = 3.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ty-pipeline", description="Operator commands for the ty_pipeline warehouse.")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser(
        "status",
        help="done / failed / retryable / pending per asset and recent partition, with an ETA",
        description=(
            "Per asset and partition (newest first): done, failed (terminal), retryable (failed, retried when the "
            "partition runs again) and pending counts over the postings the asset is meant to cover, and an ETA "
            "from the throughput of the last hours for the pending work a job will do: today's partition (the "
            "nightly run) and partitions with work finished in that window."
        ),
    )
    status.add_argument("--days", type=_positive_int, default=DEFAULT_DAYS, help="recent partitions to show (default 7)")
    status.add_argument(
        "--warehouse-url",
        default=None,
        help="SQLAlchemy URL of the warehouse (default: $TY_WAREHOUSE_URL, else the SQLite file under data/)",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--asset",
        action="append",
        choices=list(ASSETS),
        metavar="NAME",
        help=f"only this asset (repeatable): {', '.join(ASSETS)}",
    )
    add_dagster_home_argument(status)
    status.add_argument(
        "--window-hours",
        type=_positive_float,
        default=DEFAULT_WINDOW_HOURS,
        help="throughput window for the ETA, in hours (default 3)",
    )
    add_free_slots_command(commands)
    migrate = commands.add_parser(
        "migrate",
        help="upgrade the warehouse schema to the newest revision (creates it on an empty database)",
        description=(
            "Run the warehouse's Alembic migrations up to the newest revision and print the revision before and "
            "after. The pipeline does the same when a step starts; run this when going live or after an upgrade "
            "of ty_pipeline, so a long migration does not happen inside a run."
        ),
    )
    migrate.add_argument(
        "--warehouse-url",
        default=None,
        help="SQLAlchemy URL of the warehouse (default: $TY_WAREHOUSE_URL, else the SQLite file under data/)",
    )
    return parser


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    return main_with(argv, sys.stdout, sys.stderr)


def main_with(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "status":
        return run_status(args, out, err)
    if args.command == "free-slots":
        return run_free_slots(args, out, err)
    if args.command == "migrate":
        return run_migrate(args, out, err)
    return 2  # argparse rejects unknown commands before this


def run_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        url = warehouse_url(args)
    except SettingError as exc:
        err.write(f"ty-pipeline status: {exc}\n")
        return 2
    problems = check_environment()
    for problem in problems:
        # The status does not read these, but the pipeline does (its code location will not load):
        # one line each, so the operator sees the cause here as well.
        err.write(f"ty-pipeline status: warning: {problem}\n")
    # A bad TY_LLM_SOURCES was reported just above; the status then counts the default scope.
    sources = default_llm_sources() if any(p.name == LLM_SOURCES_ENV for p in problems) else llm_sources()
    shown_url = redact_url(url)  # scheme://host:port only: the URL may carry a password
    now_utc = utcnow_aware()  # looked up here, so tests can pin the command's clock
    today = berlin_today(now_utc)
    missing_file = _missing_sqlite_file(url)
    if missing_file is not None:
        # Connecting would create an empty file, and a status command must not change anything: report
        # every asset as not built, as for a warehouse whose tables do not exist yet.
        err.write(f"ty-pipeline status: no warehouse file at {missing_file}; nothing is built yet\n")
        report = StatusReport(
            today=today,
            days=[today - timedelta(days=i) for i in range(args.days)],
            now=now_utc.replace(tzinfo=None),
            window_hours=args.window_hours,
            llm_sources=sources,
            assets=[
                AssetStatus(spec=ASSETS[name], built=False, missing_tables=list(ASSETS[name].tables))
                for name in args.asset or ASSETS
            ],
        )
    else:
        try:
            report = collect_status(
                get_engine(url),
                today=today,
                days=args.days,
                now=now_utc.replace(tzinfo=None),
                window_hours=args.window_hours,
                llm_sources=sources,
                assets=args.asset,
            )
        except SQLAlchemyError as exc:
            err.write(f"ty-pipeline status: cannot read the warehouse at {shown_url}: {describe_db_error(exc, url)}\n")
            return 2
    slots = pool_slots(args, err)  # None: no Dagster instance given
    capacity = llm_capacity(None if missing_file is not None else get_engine(url), report, now_utc)
    if args.json:
        payload = report_to_json(report, shown_url)
        payload["llm_capacity"] = capacity
        if slots is not None:
            payload["pool_slots"] = slots
        json.dump(payload, out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(report, shown_url))
        out.write(render_llm_capacity(capacity))
        if slots is not None:
            out.write(render_pool_slots(slots))
    return 0


def run_migrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        url = warehouse_url(args)
    except SettingError as exc:
        err.write(f"ty-pipeline migrate: {exc}\n")
        return 2
    shown_url = redact_url(url)  # the URL may carry a password
    try:
        result = upgrade_to_head(get_engine(url))
    except SQLAlchemyError as exc:
        err.write(f"ty-pipeline migrate: cannot migrate the warehouse at {shown_url}: {describe_db_error(exc, url)}\n")
        return 2
    except UnknownRevisionError as exc:
        err.write(f"ty-pipeline migrate: {shown_url}: {exc}\n")
        return 2
    before = result.before or "none (empty, or made before migrations)"
    if result.changed:
        out.write(f"Warehouse {shown_url}: schema revision {before} -> {result.after}\n")
    else:
        out.write(f"Warehouse {shown_url}: schema revision {result.after}, already the newest\n")
    return 0


def warehouse_url(args: argparse.Namespace) -> str:
    """`--warehouse-url`, else `TY_WAREHOUSE_URL`, else the default; a bad one is a `SettingError`."""
    if args.warehouse_url:
        return check_warehouse_url(args.warehouse_url, "--warehouse-url")
    return WAREHOUSE_URL.environ_value() or DEFAULT_WAREHOUSE_URL


def _missing_sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


# -- JSON -------------------------------------------------------------------------------------------------


def _tally_json(tally: Tally) -> dict[str, Any]:
    return {
        "done": tally.done,
        "failed": tally.failed,
        "retryable": tally.retryable,
        "pending": tally.pending,
        "total": tally.total,
        "by_status": dict(sorted(tally.by_status.items())),
    }


def _asset_json(status: AssetStatus) -> dict[str, Any]:
    spec = status.spec
    base: dict[str, Any] = {
        "built": status.built,
        "table": spec.table,
        "scope": str(spec.scope),
        "unit": spec.unit,
        "missing_tables": status.missing_tables,
    }
    if not status.built:
        return {**base, "partitions": [], "totals": None, "throughput": None, "eta_seconds": None, "eta": "not built"}
    totals = status.totals
    backlog = status.backlog
    eta = backlog.eta_seconds
    return {
        **base,
        "partitions": [{"partition": day.isoformat(), **_tally_json(t)} for day, t in status.partitions.items()],
        "totals": _tally_json(totals),
        "throughput": {
            "finished": status.finished_in_window,
            "window_hours": status.window_hours,
            "per_hour": round(status.per_hour, 2),
        },
        "active_partitions": sorted(d.isoformat() for d in status.active_days),
        "pending_scheduled": backlog.scheduled,
        "pending_unscheduled": backlog.unscheduled,
        "eta_seconds": None if eta is None else round(eta, 1),
        "eta": backlog.describe(),
    }


def report_to_json(report: StatusReport, warehouse: str) -> dict[str, Any]:
    return {
        "warehouse": warehouse,
        "generated_at": report.now.isoformat(timespec="seconds") + "Z",
        "today": report.today.isoformat(),
        "days": len(report.days),
        "window_hours": report.window_hours,
        "llm_sources": list(report.llm_sources),
        "assets": {a.spec.asset: _asset_json(a) for a in report.assets},
    }


# -- text -------------------------------------------------------------------------------------------------

_COLUMNS = ("done", "failed", "retryable", "pending", "total")


def _table_row(label: str, tally: Tally) -> str:
    return f"  {label:<12}" + "".join(f"{getattr(tally, c):>11}" for c in _COLUMNS)


def summary_line(status: AssetStatus) -> str:
    """One line an operator can read aloud: where the asset stands and when it will be through."""
    name = status.spec.asset
    if not status.built:
        noun = "table" if len(status.missing_tables) == 1 else "tables"
        return f"{name}: not built (missing {noun} {', '.join(status.missing_tables)})"
    totals = status.totals
    share = f" ({100 * totals.done / totals.total:.0f}%)" if totals.total else ""
    hours = f"{status.window_hours:g}"
    return (
        f"{name}: {totals.done} of {totals.total} done{share}, {totals.failed} failed, {totals.retryable} retryable, "
        f"{totals.pending} pending; {status.finished_in_window} {status.spec.unit} finished in the last {hours} h "
        f"({status.per_hour:.1f}/h); {status.backlog.describe()}"
    )


def render_text(report: StatusReport, warehouse: str) -> str:
    oldest, newest = report.days[-1], report.days[0]
    lines = [
        f"Warehouse {warehouse}",
        f"Partitions {oldest} .. {newest} ({len(report.days)} days, newest first); throughput over the last "
        f"{report.window_hours:g} h; LLM sources: {', '.join(report.llm_sources)}",
        "",
    ]
    for status in report.assets:
        if not status.built:
            lines += [summary_line(status), ""]
            continue
        lines.append(f"{status.spec.asset} - {status.spec.scope}")
        lines.append(f"  {'partition':<12}" + "".join(f"{c:>11}" for c in _COLUMNS))
        lines += [_table_row(day.isoformat(), tally) for day, tally in status.partitions.items()]
        lines.append(_table_row("all", status.totals))
        lines.append(summary_line(status))
        unknown = {k: n for k, n in status.totals.by_status.items() if k.endswith(UNKNOWN_MARK)}
        if unknown:
            words = ", ".join(f"{k.removesuffix(UNKNOWN_MARK).strip()} ({n})" for k, n in sorted(unknown.items()))
            lines.append(f"  note: status words this command does not know, counted as pending: {words}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
