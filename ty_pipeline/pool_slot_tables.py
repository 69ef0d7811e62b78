"""Pool slots read straight from a Dagster instance's storage tables, without importing Dagster.

`ty-pipeline status` must answer in about a second from a cold start (issue 13), and importing any part
of Dagster costs 0.8-1.5 s on its own (its package `__init__` loads nearly everything). The slot section
only needs three read-only queries, so for the instance layouts this project ships and documents
(`storage: sqlite` or none, as in the Quickstart, and `storage: postgres`, as in production) they are
run here with SQLAlchemy, which the status command has imported for the warehouse anyway.

Anything else (MySQL, legacy per-storage keys, a custom instance class) gets `None` from
`locate_instance_tables`, and the caller reads the slots through Dagster's own API instead: slower,
never wrong. The table and column names are Dagster's (pinned in setup.py); `test_pool_slot_tables.py`
compares this reader with Dagster's API on SQLite and PostgreSQL instances, so an upgrade that changes
them fails there. Writing (freeing a slot) always goes through Dagster.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from ty_pipeline.domain.slot_holders import HeldSlot, judge_slot_holder

# Dagster's engine event of a run worker: `Started process for run (pid: N).`
_STARTED = "Started process for run"
_PID_IN_MESSAGE = re.compile(r"\(pid: (\d+)\)")
# Keys that move storage elsewhere in a way this reader does not follow.
_LEGACY_STORAGE_KEYS = ("run_storage", "event_log_storage", "schedule_storage", "instance_class")


class InstanceConfigError(ValueError):
    """dagster.yaml names storage this reader understands, but a value it needs is missing."""


@dataclass(frozen=True)
class InstanceTables:
    """Where a Dagster instance keeps runs, concurrency slots and event logs."""

    runs_url: str  # holds `runs`
    index_url: str  # holds `concurrency_slots`
    sqlite_event_dir: Path | None  # SQLite: one event-log file per run here; PostgreSQL: None (`index_url`)

    def event_log_url(self, run_id: str) -> str:
        if self.sqlite_event_dir is None:
            return self.index_url
        return _sqlite_read_only_url(self.sqlite_event_dir / f"{run_id}.db")


def check_instance_home(dagster_home: str | Path) -> None:
    home = Path(dagster_home)
    if not (home / "dagster.yaml").is_file() and not (home / "storage").is_dir():
        # Opening an empty directory would create a fresh instance there: say so instead.
        raise FileNotFoundError(f"no Dagster instance at {home} (no dagster.yaml and no storage/)")


def locate_instance_tables(home: str | Path) -> InstanceTables | None:
    """The instance's tables, or None when its dagster.yaml uses storage this reader does not follow."""
    import yaml  # only here: the status command without an instance needs no YAML

    home = Path(home)
    config_file = home / "dagster.yaml"
    config: Mapping[str, Any] = {}
    if config_file.is_file():
        config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        if not isinstance(config, Mapping):
            return None
    if any(key in config for key in _LEGACY_STORAGE_KEYS):
        return None
    storage = config.get("storage")
    if storage is None:
        return _sqlite_tables(home)  # Dagster's default: SQLite files under DAGSTER_HOME
    if not isinstance(storage, Mapping) or len(storage) != 1:
        return None
    if "sqlite" in storage:
        base_dir = _config_value((storage["sqlite"] or {}).get("base_dir"), "storage.sqlite.base_dir")
        return _sqlite_tables(Path(base_dir))
    if "postgres" in storage:
        url = _postgres_url(storage["postgres"] or {})
        return None if url is None else InstanceTables(url, url, None)
    return None


def read_held_slots(tables: InstanceTables) -> list[HeldSlot]:
    """Every claimed slot of every pool with a verdict on its run: what `pool_slots.held_slots` returns."""
    with _connect(tables.index_url) as index:
        if index is None or not sa.inspect(index).has_table("concurrency_slots"):
            return []  # no instance yet, or one from before pools existed
        claims = index.execute(sa.text(
            "SELECT concurrency_key, run_id, step_key FROM concurrency_slots "
            "WHERE run_id IS NOT NULL AND run_id <> '' ORDER BY concurrency_key, id"
        )).all()
    if not claims:
        return []
    run_ids = sorted({str(c.run_id) for c in claims})
    statuses = _run_statuses(tables.runs_url, run_ids)
    pids = {run_id: _worker_pid(tables, run_id) for run_id in run_ids if run_id in statuses}
    out = []
    for claim in claims:
        status = statuses.get(claim.run_id)
        pid = pids.get(claim.run_id)
        verdict = judge_slot_holder(status, pid, pid_running(pid) if pid is not None else None)
        out.append(HeldSlot(claim.concurrency_key, claim.run_id, claim.step_key, status, pid,
                            verdict.alive, verdict.reason))
    return out


def _run_statuses(runs_url: str, run_ids: list[str]) -> dict[str, str]:
    with _connect(runs_url) as conn:
        if conn is None:
            return {}
        query = sa.text("SELECT run_id, status FROM runs WHERE run_id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True))
        return {str(r.run_id): str(r.status) for r in conn.execute(query, {"ids": run_ids})}


def _worker_pid(tables: InstanceTables, run_id: str) -> int | None:
    """The pid of the run's "Started process for run" engine event, as `pool_slots.run_worker_pid`."""
    with _connect(tables.event_log_url(run_id)) as conn:
        if conn is None:
            return None
        rows = conn.execute(sa.text(
            "SELECT event FROM event_logs WHERE run_id = :run_id AND dagster_event_type = 'ENGINE_EVENT' "
            "AND event LIKE :started ORDER BY id"
        ), {"run_id": run_id, "started": f"%{_STARTED}%"}).all()
    for row in rows:
        pid = _pid_of_engine_event(str(row.event))
        if pid is not False:
            return pid
    return None


def _pid_of_engine_event(serialized: str) -> int | None | bool:
    """The pid a serialized `EventLogEntry` reports; False if it is not the run worker's start event."""
    event = json.loads(serialized).get("dagster_event") or {}
    if not str(event.get("message") or "").startswith(_STARTED):
        return False
    data = event.get("event_specific_data") or {}
    for entry in data.get("metadata_entries") or []:  # how Dagster serializes metadata for old readers
        if entry.get("label") == "pid":
            value = (entry.get("entry_data") or {})
            return _as_int(value.get("text", value.get("value")))
    metadata = data.get("metadata") or {}
    if "pid" in metadata:
        value = metadata["pid"]
        return _as_int(value.get("text", value.get("value")) if isinstance(value, Mapping) else value)
    return None


def _as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _sqlite_tables(base_dir: Path) -> InstanceTables:
    # Dagster's layout (dagster._core.storage.sqlite_storage): runs in history/runs.db, the event-log
    # index with the concurrency tables in history/runs/index.db, each run's events in history/runs/<id>.db.
    history = base_dir / "history"
    return InstanceTables(
        runs_url=_sqlite_read_only_url(history / "runs.db"),
        index_url=_sqlite_read_only_url(history / "runs" / "index.db"),
        sqlite_event_dir=history / "runs",
    )


def _sqlite_read_only_url(path: Path) -> str:
    # Read-only: a status command must not create or change the instance's files.
    return f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"


def _postgres_url(config: Mapping[str, Any]) -> str | None:
    """The URL as dagster_postgres.utils.pg_url_from_config builds it; None for setups it cannot follow."""
    if "postgres_url" in config:
        return _config_value(config["postgres_url"], "storage.postgres.postgres_url")
    db = config.get("postgres_db")
    if not isinstance(db, Mapping) or "auth_provider" in db:
        return None  # e.g. IAM tokens: only Dagster knows how to get a password
    user = quote(_config_value(db.get("username"), "storage.postgres.postgres_db.username"))
    password = _config_value(db.get("password"), "storage.postgres.postgres_db.password", default="")
    host = _config_value(db.get("hostname"), "storage.postgres.postgres_db.hostname", default="")
    name = _config_value(db.get("db_name"), "storage.postgres.postgres_db.db_name", default="")
    port = _config_value(db.get("port"), "storage.postgres.postgres_db.port", default="5432")
    scheme = _config_value(db.get("scheme"), "storage.postgres.postgres_db.scheme", default="postgresql")
    userinfo = f"{user}:{quote(password)}" if password else user
    url = f"{scheme}://{userinfo}@{host}:{port}/{name}"
    params = db.get("params")
    return f"{url}?{urlencode(params, quote_via=quote)}" if params else url


def _config_value(value: object, where: str, *, default: str | None = None) -> str:
    """A dagster.yaml string value, resolving `{env: NAME}` as Dagster does."""
    if isinstance(value, Mapping) and set(value) == {"env"}:
        name = str(value["env"])
        resolved = os.environ.get(name)
        if resolved is None:
            raise InstanceConfigError(f"{where} is read from the environment variable {name}, which is not set")
        return resolved
    if value is None:
        if default is None:
            raise InstanceConfigError(f"dagster.yaml has no {where}")
        return default
    return str(value)


@contextmanager
def _connect(url: str) -> Iterator[sa.Connection | None]:
    """A connection, or None when the SQLite file does not exist (nothing was ever written there)."""
    if url.startswith("sqlite:///file:"):
        path = url.removeprefix("sqlite:///file:").split("?", 1)[0]
        if not Path(unquote(path)).is_file():
            yield None
            return
    connect_args: dict[str, Any] = {"connect_timeout": 5} if url.startswith("postgres") else {}
    engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def pid_running(pid: int) -> bool:
    """Whether a process with this id exists on this machine (the quickstart runs everything locally)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
