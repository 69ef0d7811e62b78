"""Raw API payloads move out of `postings` into `posting_payloads`.

Revision ID: 0003
Revises: 0002

Why: `raw_json` (~1 kB per posting) made `postings` wide: 400,000 rows took 585 MB, and every scan of the
status CLI, the checks and the sensors read 66k pages for columns they never look at (issue #13). The
payload is only needed to re-parse or audit a posting, so it lives in its own table, one row per posting,
written when the posting's content changes.

Upgrade: create the table, copy every non-null `raw_json` with the posting's `content_hash` and
`last_seen_at`, drop the column with a plain `ALTER TABLE ... DROP COLUMN` (SQLite 3.35+; never a batch
rebuild: dropping and recreating `postings` would cascade its foreign keys). The `postings_enriched` view
is dropped first and recreated after (same SQL as 0001), since SQLite re-checks views on DROP COLUMN.
Downgrade: the column comes back and is filled from the side table, which is dropped.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from alembic import op

from ty_pipeline.warehouse.migrations.versions import _0001_view_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "posting_payloads" not in inspector.get_table_names():
        op.create_table(
            "posting_payloads",
            sa.Column("posting_id", sa.Integer, sa.ForeignKey("postings.posting_id", ondelete="CASCADE"),
                      primary_key=True),
            sa.Column("content_hash", sa.String(64)),
            sa.Column("raw_json", sa.Text, nullable=False),
            sa.Column("updated_at", sa.DateTime, nullable=False),
        )
    if "raw_json" not in {c["name"] for c in inspector.get_columns("postings")}:
        return  # already narrow (a warehouse whose version row was lost): nothing to move
    op.execute(
        "INSERT INTO posting_payloads (posting_id, content_hash, raw_json, updated_at) "
        "SELECT posting_id, content_hash, raw_json, last_seen_at FROM postings WHERE raw_json IS NOT NULL "
        "AND posting_id NOT IN (SELECT posting_id FROM posting_payloads)"
    )
    op.execute("DROP VIEW IF EXISTS postings_enriched")  # SQLite re-checks every view on DROP COLUMN
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # No DROP COLUMN before 3.35, and a batch rebuild would DROP TABLE postings, which with foreign
        # keys on cascades into every table that refers to it. Empty the column instead.
        op.execute("UPDATE postings SET raw_json = NULL")
    else:
        op.execute("ALTER TABLE postings DROP COLUMN raw_json")
    op.execute(_0001_view_sql())


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS postings_enriched")
    op.add_column("postings", sa.Column("raw_json", sa.Text))
    op.execute(
        "UPDATE postings SET raw_json = (SELECT pp.raw_json FROM posting_payloads pp "
        "WHERE pp.posting_id = postings.posting_id)"
    )
    op.drop_table("posting_payloads")
    op.execute(_0001_view_sql())
