"""Postings keep ids up to 2,048 bytes and any postal code or country the APIs send.

Revision ID: 0004
Revises: 0003

Why: `postings.external_id` was VARCHAR(255), `postal_code` VARCHAR(16) and `country` VARCHAR(64). On
PostgreSQL a longer value (a malformed Jobsuche `refnr` or Deutsche Bank id, a `plz` with junk appended)
refused the whole posting: it became a lost row. The id is now VARCHAR(2048): 2,048 bytes of UTF-8 is the
limit the code enforces (`MAX_EXTERNAL_ID_BYTES`, domain/posting_record.py) because the unique btree key
(source, external_id) cannot hold an entry above ~2,650 bytes; a longer id is still a lost row, refused
before the write with that reason. Postal code and country have no index and no reason for a bound: TEXT.
The unique constraint `uq_postings_source_external_id` is kept as it is.

PostgreSQL: plain ALTER COLUMN ... TYPE. Both changes are binary-coercible (a longer VARCHAR, VARCHAR to
TEXT), so neither the table nor the unique index is rewritten. The `postings_enriched` view reads
`external_id`, and PostgreSQL refuses to retype a column a view uses, so the view is dropped first and
recreated after (same SQL as 0001).

SQLite ignores declared lengths (every one of these columns already held longer text), so only the declared
types in the stored CREATE TABLE change, by SQLite's documented in-place schema edit (writable_schema,
https://sqlite.org/lang_altertable.html#otheralter) in the upgrade's transaction. Never a batch rebuild:
dropping and recreating `postings` would cascade its foreign keys into every side table (see 0003).

Downgrade: back to the old types. On PostgreSQL it refuses, naming the counts, while rows hold longer values
(the ALTER would fail on them anyway); delete or shorten those rows first.

Frozen: the old and new types are literals here, not read from schema.py.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

from ty_pipeline.warehouse.migrations.versions import _0001_view_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (column of `postings`, type before this revision, type after it); external_id's length is in characters,
# which every id within the code's 2,048-byte limit satisfies.
_RETYPED = (
    ("external_id", "VARCHAR(255)", "VARCHAR(2048)"),
    ("postal_code", "VARCHAR(16)", "TEXT"),
    ("country", "VARCHAR(64)", "TEXT"),
)
_OLD_LENGTHS = {"external_id": 255, "postal_code": 16, "country": 64}


def upgrade() -> None:
    _retype({column: (old, new) for column, old, new in _RETYPED})


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":  # SQLite never enforced the lengths: its rows fit the old schema
        too_long = {
            column: bind.execute(sa.text(
                f"SELECT count(*) FROM postings WHERE char_length({column}) > {length}"  # noqa: S608 - literals
            )).scalar_one()
            for column, length in _OLD_LENGTHS.items()
        }
        if any(too_long.values()):
            found = ", ".join(f"{n} with {column} longer than {_OLD_LENGTHS[column]}"
                              for column, n in too_long.items() if n)
            raise RuntimeError(
                f"cannot downgrade below 0004: postings has rows the old column types cannot hold ({found}); "
                "delete or shorten them first"
            )
    _retype({column: (new, old) for column, old, new in _RETYPED})


def _retype(changes: dict[str, tuple[str, str]]) -> None:
    """Give each column of `postings` in `changes` (column -> (from type, to type)) its new type."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        _retype_sqlite(bind, changes)
        return
    op.execute("DROP VIEW IF EXISTS postings_enriched")  # PostgreSQL refuses to retype a column a view reads
    for column, (_before, after) in changes.items():
        op.execute(f"ALTER TABLE postings ALTER COLUMN {column} TYPE {after}")
    op.execute(_0001_view_sql())


def _declared_types(bind: sa.Connection) -> dict[str, str]:
    return {row[1]: str(row[2]).upper() for row in bind.exec_driver_sql("PRAGMA table_info(postings)")}


def _retype_sqlite(bind: sa.Connection, changes: dict[str, tuple[str, str]]) -> None:
    declared = _declared_types(bind)
    # A column that already has its new type is left alone (a warehouse whose version row was lost).
    todo = {column: types for column, types in changes.items() if declared.get(column) != types[1]}
    if not todo:
        return
    sql = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'postings'")).scalar_one()
    for column, (before, after) in todo.items():
        # `external_id VARCHAR(255) NOT NULL,` as SQLAlchemy wrote it; the name may be quoted.
        pattern = re.compile(rf'((?:^|[\s,(])"?{column}"?\s+){re.escape(before)}(?=[\s,)])', re.IGNORECASE)
        sql, found = pattern.subn(rf"\g<1>{after}", sql)
        if found != 1:
            raise RuntimeError(
                f"postings.{column} is declared {declared.get(column)!r}, expected {before!r}: this revision "
                "only retypes the schema the earlier revisions made; fix the column by hand"
            )
    # SQLite's documented procedure for a change that leaves the stored rows as they are: edit the table's
    # CREATE statement and bump the schema version, so every connection re-reads the schema.
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.execute(sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'postings'"),
                     {"sql": sql})
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    now = _declared_types(bind)  # re-parsed: a statement SQLite cannot read would fail here, in the transaction
    wrong = {column: now.get(column) for column, (_before, after) in todo.items() if now.get(column) != after}
    if wrong:
        raise RuntimeError(f"retyping postings left {wrong}; the upgrade is rolled back")
