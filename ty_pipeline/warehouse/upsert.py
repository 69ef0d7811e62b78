"""The one upsert of the warehouse: `INSERT ... ON CONFLICT` on SQLite and PostgreSQL alike.

Both dialects spell it the same way in SQLAlchemy, but from different modules; every store used to
pick the module itself (five copies).

Two forms. `upsert` / `insert_new` embed the rows (multi-row `VALUES`): fine for a handful of rows.
For bulk writes use `bulk_upsert`: a statement with rows embedded is compiled afresh for every chunk,
one bind parameter at a time (~0.4 s of CPU per 500 postings, profiled in issue #13). `bulk_upsert`
keeps the rows out of the statement, so it is compiled once and cached: on PostgreSQL the rows are
COPYed into a temporary table and upserted by one `INSERT ... SELECT`; on SQLite it is an executemany.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, column, select
from sqlalchemy import table as table_clause
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import TableClause

T = TypeVar("T")


def dialect_insert(bind: Any, table: Table) -> Any:
    """`insert(table)` of the bind's dialect, which has `on_conflict_do_update/nothing` and `excluded`.

    `bind` is an Engine or a Connection."""
    return (postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert)(table)


def upsert(
    bind: Any,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    keys: Sequence[str],
    update: Sequence[str] | None = None,
    extra_set: Mapping[str, Any] | None = None,
    where: Any = None,
) -> Any:
    """An `INSERT ... ON CONFLICT (keys) DO UPDATE` statement: `update` columns (default: every
    non-key column of the first row) take the new values; `extra_set` sets further columns to fixed
    values or SQL expressions; `where` limits which conflicting rows change (it may use `stmt.excluded`
    through `table`'s columns)."""
    stmt = dialect_insert(bind, table).values(rows if isinstance(rows, Mapping) else list(rows))
    first = rows if isinstance(rows, Mapping) else rows[0]
    columns = list(update) if update is not None else [k for k in first if k not in keys]
    set_: dict[str, Any] = {k: getattr(stmt.excluded, k) for k in columns}
    set_.update(extra_set or {})
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=set_, where=where)


def bulk_upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    keys: Sequence[str],
    update: Sequence[str],
    extra_set: Mapping[str, Any] | None = None,
    where: Callable[[Any], Any] | None = None,
) -> None:
    """Write `rows` with one `INSERT ... ON CONFLICT (keys) DO UPDATE` inside `conn`'s transaction.

    `update` columns take the new values; `extra_set` adds SQL expressions of the existing row (e.g. a
    `CASE`); `where(excluded)` limits which conflicting rows change. Bind values inside `extra_set` and
    `where` are the same for every row; every row has the same keys. All rows land or none (the
    statement fails as a whole, e.g. on a key twice in `rows` on PostgreSQL).
    """
    if not rows:
        return
    columns = list(rows[0])
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2":  # COPY through copy_expert
        staged = _copy_to_temp(conn, table, columns, rows)
        source = select(*(staged.c[name] for name in columns))
        stmt = dialect_insert(conn, table).from_select(columns, source)
        conn.execute(_on_conflict(stmt, keys, update, extra_set, where))
        # Gone at commit anyway; dropped now so a second bulk upsert in the same transaction can stage.
        conn.exec_driver_sql(f'DROP TABLE "{staged.name}"')
    else:
        # SQLite (or another PostgreSQL driver): an executemany of the cached statement; sqlite3 loops
        # over the rows in C.
        conn.execute(_on_conflict(dialect_insert(conn, table), keys, update, extra_set, where), list(rows))


def _on_conflict(stmt: Any, keys: Sequence[str], update: Sequence[str], extra_set: Mapping[str, Any] | None,
                 where: Callable[[Any], Any] | None) -> Any:
    set_: dict[str, Any] = {k: stmt.excluded[k] for k in update}
    set_.update(extra_set or {})
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_=set_, where=where(stmt.excluded) if where is not None else None
    )


def _copy_to_temp(conn: Connection, table: Table, columns: list[str], rows: Sequence[Mapping[str, Any]]) -> TableClause:
    """COPY `rows` into a temporary table shaped like `columns` of `table`, dropped at commit.

    Why not executemany: SQLAlchemy turns an executemany with `ON CONFLICT` into one round trip per
    row on psycopg2 (its insertmanyvalues skips upserts), ~0.5 ms each; COPY is one stream.
    """
    name = f"_incoming_{table.name}"
    quoted = ", ".join(f'"{c}"' for c in columns)
    conn.exec_driver_sql(
        f'CREATE TEMPORARY TABLE "{name}" ON COMMIT DROP AS SELECT {quoted} FROM "{table.name}" WITH NO DATA'
    )
    buffer = io.StringIO()
    buffer.writelines("\t".join(_copy_text(row[c]) for c in columns) + "\n" for row in rows)
    buffer.seek(0)
    driver = conn.connection.driver_connection
    if driver is None:  # SQLAlchemy's pooled connection has let go of the psycopg2 one (invalidated)
        raise RuntimeError(f"COPY into {table.name}: the database connection was invalidated; retry the step")
    cursor = driver.cursor()
    try:
        cursor.copy_expert(f'COPY "{name}" ({quoted}) FROM STDIN', buffer)
    finally:
        cursor.close()
    return table_clause(name, *(column(c) for c in columns))


def _copy_text(value: Any) -> str:
    """One value in COPY's text format (docs: "File Formats" of COPY): NULL is \\N, backslash escapes."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        # Four C-level replaces: `str.translate` with a mapping was 6x slower on 1 kB payloads.
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"no COPY text form for {type(value).__name__}; convert it before the bulk upsert")


def insert_new(bind: Any, table: Table, rows: Sequence[Mapping[str, Any]], *, keys: Sequence[str] | None = None) -> Any:
    """An `INSERT ... ON CONFLICT DO NOTHING`: rows whose key exists are left as they are."""
    stmt = dialect_insert(bind, table).values(list(rows))
    return stmt.on_conflict_do_nothing(index_elements=list(keys) if keys else None)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size`: one statement's rows, or one `IN (...)` list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
