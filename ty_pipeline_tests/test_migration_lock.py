"""`alembic` by hand and the pipeline's own upgrade (`upgrade_to_head`) take one lock, on SQLite and PostgreSQL.

The race these tests stage: someone runs `alembic upgrade head` from the checkout while the steps of the
nightly run start and bring the schema up themselves. Each side is paused half-way through its revisions
(a hook on the SQL it sends), and the other must wait for it instead of running the same revisions at once.
"""

from __future__ import annotations

import logging.config
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from ty_pipeline.warehouse.engine import get_engine
from ty_pipeline.warehouse.migrations import (
    PG_LOCK_KEY,
    UpgradeResult,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from ty_pipeline_tests.paths import REPO_ROOT

WAITING = "waiting for the migration lock"
# Generous: the machine running the tests may be busy, and a deadline only costs time when a test fails.
DEADLINE_S = 60.0


class PauseAtFirstTable:
    """Holds the first `CREATE TABLE` (other than Alembic's version table) sent by one thread, until released:
    that thread is then half-way through the baseline revision, with whatever lock it took."""

    def __init__(self, thread_name: str) -> None:
        self.thread_name = thread_name
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, _conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        if (threading.current_thread().name == self.thread_name and not self.reached.is_set()
                and "CREATE TABLE" in statement and "alembic_version" not in statement):
            self.reached.set()
            self.release.wait(DEADLINE_S)


@contextmanager
def pausing(target: sa.Engine | type[sa.Engine], pause: PauseAtFirstTable) -> Iterator[PauseAtFirstTable]:
    sa.event.listen(target, "before_cursor_execute", pause)
    try:
        yield pause
    finally:
        pause.release.set()  # never leave a paused thread behind, whatever failed
        sa.event.remove(target, "before_cursor_execute", pause)


def _in_thread(name: str, fn: Callable[[], object]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # reported by the test's assertions, with its message
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome


def _hold_the_lock(conn: sa.Connection) -> None:
    """The lock as the pipeline takes it, written out here: the test states which lock `alembic` must respect."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"))
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _lock_is_free(url: str) -> bool:
    """Whether another connection could take the migration lock right now (it is released again at once)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=(
        {"timeout": 0} if url.startswith("sqlite") else {}))
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                return bool(conn.execute(sa.text(f"SELECT pg_try_advisory_xact_lock({PG_LOCK_KEY})")).scalar_one())
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except sa.exc.OperationalError as exc:
                assert "locked" in str(exc)
                return False
            conn.exec_driver_sql("ROLLBACK")
            return True
    finally:
        engine.dispose()


def _version_rows(url: str) -> list[str]:
    with get_engine(url).connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _alembic_by_hand(url: str, *args: str) -> subprocess.Popen[str]:
    """`alembic ...` from the checkout, with the repository's alembic.ini, as a developer runs it."""
    env = dict(os.environ, TY_WAREHOUSE_URL=url)
    return subprocess.Popen([sys.executable, "-m", "alembic", *args], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _lines(proc: subprocess.Popen[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The process's output, line by line as it comes; the thread ends with the output."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def _wait_for_line(lines: queue.Queue[str], text: str, seen: list[str]) -> bool:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if text in line:
            return True
    return False


def test_alembic_upgrade_by_hand_waits_while_a_step_migrates_and_then_finds_the_work_done(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    with pausing(engine, PauseAtFirstTable("step")) as pause:
        step, step_outcome = _in_thread("step", lambda: upgrade_to_head(engine))
        assert pause.reached.wait(DEADLINE_S), step_outcome
        proc = _alembic_by_hand(warehouse_url, "upgrade", "head")
        try:
            lines, reader = _lines(proc)
            output: list[str] = []
            assert _wait_for_line(lines, WAITING, output), "".join(output)
            time.sleep(0.5)
            assert proc.poll() is None  # still waiting: nothing of its own has run
            pause.release.set()
            step.join(DEADLINE_S)
            returncode = proc.wait(DEADLINE_S)
            reader.join(DEADLINE_S)
            while not lines.empty():
                output.append(lines.get())
            assert returncode == 0, "".join(output)
        finally:
            proc.kill()
            proc.wait()
    assert step_outcome == {"result": UpgradeResult(None, head_revision())}  # the step ran every revision
    assert _version_rows(warehouse_url) == [head_revision()]
    assert "Running upgrade" not in "".join(output)  # and alembic, once it had the lock, had nothing left to do


@pytest.fixture
def repo_alembic_config(monkeypatch: pytest.MonkeyPatch, warehouse_url: str) -> Config:
    """The repository's alembic.ini aimed at the test warehouse, for Alembic's command API in this process.

    The ini's logging set-up would replace pytest's handlers: env.py reads `fileConfig` when Alembic runs it.
    """
    monkeypatch.setenv("TY_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setattr(logging.config, "fileConfig", lambda *_args, **_kwargs: None)
    monkeypatch.chdir(REPO_ROOT)  # the ini's script_location is relative to the checkout
    return Config(str(REPO_ROOT / "alembic.ini"))


def test_alembic_upgrade_by_hand_holds_the_lock_until_it_is_done_and_a_step_starting_meanwhile_waits(
    warehouse_url: str, repo_alembic_config: Config
) -> None:
    # An empty warehouse a step has opened before: on SQLite, a step's first connection switches the file to
    # WAL for good, and cannot do that while another process holds the write lock ("database is locked").
    with get_engine(warehouse_url).connect():
        pass
    # The engine env.py creates is its own: the pause listens on every engine, and acts in one thread.
    with pausing(sa.Engine, PauseAtFirstTable("by_hand")) as pause:
        by_hand, by_hand_outcome = _in_thread("by_hand", lambda: command.upgrade(repo_alembic_config, "head"))
        assert pause.reached.wait(DEADLINE_S), by_hand_outcome
        assert not _lock_is_free(warehouse_url)
        step, step_outcome = _in_thread("step", lambda: upgrade_to_head(get_engine(warehouse_url)))
        time.sleep(1.0)
        assert step.is_alive(), step_outcome  # the step waits for the lock
        pause.release.set()
        by_hand.join(DEADLINE_S)
        step.join(DEADLINE_S)
    assert by_hand_outcome == {"result": None}
    # The step got the lock once alembic committed, and found the warehouse at head: it ran nothing.
    assert step_outcome == {"result": UpgradeResult(head_revision(), head_revision())}
    assert _version_rows(warehouse_url) == [head_revision()]


def test_alembic_downgrade_and_stamp_by_hand_take_the_lock_too(warehouse_url: str, repo_alembic_config: Config) -> None:
    upgrade_to_head(get_engine(warehouse_url))
    engine = sa.create_engine(warehouse_url, poolclass=sa.pool.NullPool)
    try:
        for name, run in (("downgrade", lambda: command.downgrade(repo_alembic_config, "-1")),
                          ("stamp", lambda: command.stamp(repo_alembic_config, "head"))):
            with engine.connect() as holder, holder.begin():
                _hold_the_lock(holder)
                thread, outcome = _in_thread(name, run)
                time.sleep(1.0)
                assert thread.is_alive(), (name, outcome)
            thread.join(DEADLINE_S)
            assert outcome == {"result": None}, name
    finally:
        engine.dispose()
    assert _version_rows(warehouse_url) == [head_revision()]


def test_alembic_current_by_hand_takes_no_lock(warehouse_url: str, repo_alembic_config: Config) -> None:
    """Commands that only read do not wait: on SQLite the lock is the write lock every step of a run takes."""
    upgrade_to_head(get_engine(warehouse_url))
    engine = sa.create_engine(warehouse_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as holder, holder.begin():
            _hold_the_lock(holder)
            thread, outcome = _in_thread("current", lambda: command.current(repo_alembic_config))
            thread.join(DEADLINE_S / 4)
            assert not thread.is_alive()
    finally:
        engine.dispose()
    assert outcome == {"result": None}
    with get_engine(warehouse_url).connect() as conn:
        assert current_revision(conn) == head_revision()
