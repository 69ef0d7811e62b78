"""The one upsert of the warehouse: `INSERT ... ON CONFLICT` on SQLite and PostgreSQL alike.

Both dialects spell it the same way in SQLAlchemy, but from different modules; every store used to
pick the module itself (five copies). Multi-row `VALUES` keep a chunk to one statement, which is the
bulk path (SQLAlchemy's insertmanyvalues is for `executemany` with RETURNING; a single multi-row
statement is what both servers execute fastest here).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

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
    where: Any = None,
) -> Any:
    """An `INSERT ... ON CONFLICT (keys) DO UPDATE` statement: `update` columns (default: every
    non-key column of the first row) take the new values; `where` limits which conflicting rows
    change (it may use `stmt.excluded` through `table`'s columns)."""
    stmt = dialect_insert(bind, table).values(rows if isinstance(rows, Mapping) else list(rows))
    first = rows if isinstance(rows, Mapping) else rows[0]
    columns = list(update) if update is not None else [k for k in first if k not in keys]
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={k: getattr(stmt.excluded, k) for k in columns}, where=where
    )


def insert_new(bind: Any, table: Table, rows: Sequence[Mapping[str, Any]], *, keys: Sequence[str] | None = None) -> Any:
    """An `INSERT ... ON CONFLICT DO NOTHING`: rows whose key exists are left as they are."""
    stmt = dialect_insert(bind, table).values(list(rows))
    return stmt.on_conflict_do_nothing(index_elements=list(keys) if keys else None)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size`: one statement's rows, or one `IN (...)` list."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
