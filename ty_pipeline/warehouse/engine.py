"""Engine creation and schema management for the warehouse (SQLite default, PostgreSQL in production)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateColumn

from ty_pipeline.warehouse.schema import VIEWS, metadata

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WAREHOUSE_URL = f"sqlite:///{PROJECT_ROOT / 'data' / 'warehouse.sqlite'}"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_schema_ready: set[str] = set()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets the webserver read while a run writes; busy_timeout waits instead of "database is locked";
    # foreign keys are off by default in SQLite.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def get_engine(url: str) -> Engine:
    """One pooled engine per URL per process (runs call this once per step)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                # A stuck idle transaction once blocked the nightly upserts for minutes
                # (docs/domain_rules.md §10.3): let the server kill such sessions.
                options = " ".join(
                    filter(None, [parsed.query.get("options"), "-c idle_in_transaction_session_timeout=300000"])
                )
                engine = create_engine(
                    url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"options": options}
                )
            _engines[url] = engine
        return engine


def dispose_engine(url: str) -> None:
    with _engines_lock:
        engine = _engines.pop(url, None)
        _schema_ready.discard(url)
    if engine is not None:
        engine.dispose()


def ensure_schema(engine: Engine) -> None:
    """Create missing tables, add columns and indexes that newer code expects, and (re)create the views.

    Safe to call from concurrent runs: on PostgreSQL an advisory lock serialises it.
    """
    key = str(engine.url)
    if key in _schema_ready:
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(73573001)"))
        else:
            # pysqlite opens no transaction for DDL, so two processes (the parallel steps of one run)
            # interleaved their DROP / CREATE VIEW and one failed with "view ... already exists". Taking
            # the write lock first makes the whole set-up one transaction; the other waits (busy_timeout).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        metadata.create_all(conn)
        _add_missing_columns(conn)
        _add_missing_indexes(conn)
        current = _view_definitions(conn)
        for name, sql in VIEWS.items():
            if current.get(name) == sql:
                continue  # unchanged: do not make readers wait on a DROP/CREATE every process start
            conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
            conn.execute(text(sql))
    _schema_ready.add(key)


def _view_definitions(conn) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The stored text of our views on SQLite (kept verbatim); PostgreSQL normalises it, so always renew."""
    if conn.dialect.name != "sqlite":
        return {}
    rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
    return {name: sql for name, sql in rows}


def _add_missing_columns(conn) -> None:  # type: ignore[no-untyped-def]
    """Additive migrations: a nullable or defaulted column added in code appears in old warehouses."""
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        existing = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in existing:
                continue
            ddl = CreateColumn(column).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))


def _add_missing_indexes(conn) -> None:  # type: ignore[no-untyped-def]
    """`create_all` creates indexes only with their table: an index added in code must reach old warehouses.

    Matched by name. On a large table this runs once and takes a while (about a second per 100k postings)
    while writers to that table wait; later starts find the index and do nothing.
    """
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        existing = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in existing:
                index.create(conn)
