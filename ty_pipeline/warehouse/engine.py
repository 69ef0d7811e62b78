"""Engine creation and schema management for the warehouse (SQLite default, PostgreSQL in production)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from ty_pipeline.warehouse.migrations import upgrade_to_head

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WAREHOUSE_URL = f"sqlite:///{PROJECT_ROOT / 'data' / 'warehouse.sqlite'}"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_schema_ready: set[str] = set()


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the webserver read while a run writes; busy_timeout waits instead of "database is locked";
    # foreign keys are off by default in SQLite.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _pg_options(given: str | tuple[str, ...] | None) -> str:
    """libpq `options` for a PostgreSQL engine: the URL's own (`?options=...`, a tuple when repeated) and
    the idle-transaction timeout."""
    own = [given] if isinstance(given, str) else list(given or ())
    return " ".join([*filter(None, own), "-c idle_in_transaction_session_timeout=300000"])


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
                options = _pg_options(parsed.query.get("options"))
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
    """Bring the warehouse schema to the newest Alembic revision (ty_pipeline/warehouse/migrations/).

    The first use of a database creates everything; a warehouse made before migrations is adopted by the
    baseline revision. Called at the start of many steps, so it does its work once per engine and process,
    and is one read of `alembic_version` when the warehouse is already at head. Safe to call from
    concurrent processes (see `upgrade_to_head`).
    """
    key = str(engine.url)
    if key in _schema_ready:
        return
    upgrade_to_head(engine)
    _schema_ready.add(key)
