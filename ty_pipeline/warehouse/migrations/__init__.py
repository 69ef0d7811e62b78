"""Alembic migrations of the warehouse, run from code: no alembic.ini is needed at run time.

`upgrade_to_head(engine)` brings a warehouse to the newest revision in `versions/` and is what
`ensure_schema` and `ty-pipeline migrate` call. A new schema change is a new revision file next to
`0001_baseline.py` (`alembic revision --autogenerate --rev-id 0002 -m "..."` from the checkout, with the
repository's alembic.ini), and `ty_pipeline_tests/test_migrations.py` fails until schema.py and the
revisions agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, exc, text

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic itself is imported inside the functions: importing it costs ~75 ms, and every user of the engine
# module (`ty-pipeline status` on a cold start, for one) imports this module but, at head, never needs it.

MIGRATIONS_DIR = Path(__file__).resolve().parent

# Serialises schema changes between processes on PostgreSQL (the parallel steps of one run all call
# ensure_schema when they start; `alembic upgrade` by hand takes it too, in env.py). The number is arbitrary
# but fixed: the same one the pre-Alembic code took.
PG_LOCK_KEY = 73573001


class UnknownRevisionError(RuntimeError):
    """The warehouse is at a revision that is not in this code's `versions/` (a newer version migrated it)."""


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  # None: no revision yet (an empty database, or one made before Alembic)
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration, built in code; `connection` is what env.py migrates when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """Read once per process: the revision files do not change while it runs."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None, f"no revisions in {MIGRATIONS_DIR / 'versions'}"
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(engine: Engine) -> UpgradeResult:
    """Upgrade the warehouse to the newest revision; a no-op (one small read) when it is there already.

    Safe to call from concurrent processes: the upgrade runs in one transaction under a lock (an advisory
    lock on PostgreSQL, SQLite's write lock), and the revision is read again once the lock is held, so the
    second process finds the work done.
    """
    head = head_revision()
    with engine.connect() as conn:
        before = current_revision(conn)
    if before == head:
        return UpgradeResult(before, head)
    with engine.begin() as conn:
        take_migration_lock(conn)
        before = current_revision(conn)
        if before is not None and before != head:
            _check_known(before)
        if before != head:
            # Alembic sees the open transaction and runs inside it: no commit of its own, so on PostgreSQL
            # a failed revision leaves the warehouse as it was (DDL is transactional there). env.py takes
            # no lock for a connection it is given: this one holds it already.
            from alembic import command

            command.upgrade(alembic_config(conn), "head")
    return UpgradeResult(before, head)


def take_migration_lock(conn: Connection, on_wait: Callable[[], None] | None = None) -> None:
    """Take the lock that serialises schema changes, held until `conn`'s transaction ends.

    `conn` must be in a transaction that has run nothing yet (SQLite can only take its write lock as the
    first statement). `upgrade_to_head` and `alembic upgrade/downgrade/stamp` by hand (env.py) both come
    here, so neither can run its revisions while the other does. `on_wait` is called once, before waiting,
    when another connection holds the lock (env.py tells the person at the terminal why nothing happens).
    """
    if conn.dialect.name == "postgresql":
        if on_wait is not None:
            if conn.execute(text(f"SELECT pg_try_advisory_xact_lock({PG_LOCK_KEY})")).scalar_one():
                return
            on_wait()
        conn.execute(text(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"))
        return
    # pysqlite opens no transaction for DDL, so two processes interleaved their DDL and one failed
    # ("view ... already exists"). Taking the write lock first makes the whole upgrade one transaction;
    # the other process waits (busy_timeout) and then finds the revision at head.
    if on_wait is not None:
        waits_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        conn.exec_driver_sql("PRAGMA busy_timeout = 0")  # one try that fails at once when it is held
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except exc.OperationalError as error:
            if "locked" not in str(error):
                raise
            on_wait()
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(waits_ms)}")
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _check_known(revision: str) -> None:
    known = {script.revision for script in script_directory().walk_revisions()}
    if revision not in known:
        raise UnknownRevisionError(
            f"the warehouse is at schema revision {revision!r}, which this ty_pipeline does not know: a newer "
            f"version migrated it. Deploy that version (or newer) instead of this one; revisions here end "
            f"at {head_revision()!r}."
        )
