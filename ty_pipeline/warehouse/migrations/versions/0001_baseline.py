"""Baseline: the warehouse schema as `ensure_schema` left it before migrations (tables, indexes, the view).

Revision ID: 0001
Revises: (none)

On an empty database this creates everything. A warehouse made by the code before Alembic has no
`alembic_version` table, so it starts here too: its tables stay, and this revision only adds what that code
would have added on its next start (tables, columns and indexes introduced after the warehouse was first
created: the `description_leases`, `skill_keyword_items`, profession and `llm_throughput` tables;
`postings.rechecks` and `recheck_after`; the hr-expert columns of `ihl_scores`; the status and
`ix_postings_active` indexes). A warehouse already at this schema gets nothing but its version row and a
renewed view: it is stamped, not recreated.

The definitions below are a frozen copy of `ty_pipeline/warehouse/schema.py` at this revision, not an import
of it: a later change to schema.py is a later revision, so this one must keep building the old shape.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

baseline = MetaData()

postings = Table(
    "postings",
    baseline,
    Column("posting_id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("origin", String(16), nullable=False, server_default="api"),
    Column("title", Text),
    Column("employer", Text),
    Column("beruf", Text),
    Column("city", Text),
    Column("postal_code", String(16)),
    Column("state", String(64)),
    Column("country", String(64)),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("external_url", Text),
    Column("partner_url", Text),
    Column("published_date", Date),
    Column("first_published_date", Date),
    Column("partition_date", Date, nullable=False),
    Column("first_seen_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("content_hash", String(32)),
    Column("raw_json", Text),
    Column("invalidated", Boolean, nullable=False, server_default=false()),
    Column("invalidated_reason", String(64)),
    Column("invalidated_at", DateTime),
    Column("rechecks", Integer, nullable=False, server_default="0"),
    Column("recheck_after", DateTime),
    UniqueConstraint("source", "external_id", name="uq_postings_source_external_id"),
)
Index("ix_postings_partition_date", postings.c.partition_date)
Index(
    "ix_postings_active",
    postings.c.partition_date,
    postings.c.invalidated,
    postings.c.invalidated_at,
    postgresql_include=["state", "posting_id"],
)
Index("ix_postings_state", postings.c.state)
Index("ix_postings_source_last_seen", postings.c.source, postings.c.last_seen_at)

job_descriptions = Table(
    "job_descriptions",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("description", Text),
    Column("partner_url", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("http_status", Integer),
    Column("last_error", Text),
    Column("fetched_at", DateTime, nullable=False),
)
Index("ix_job_descriptions_status", job_descriptions.c.status)

description_leases = Table(
    "description_leases",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("claimed_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)
Index("ix_description_leases_run", description_leases.c.run_id)

posting_summaries = Table(
    "posting_summaries",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("summary", Text),
    Column("fields_json", Text),
    Column("grades_json", Text),
    Column("models", Text),
    Column("prompt_version", String(32)),
    Column("input_hash", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("updated_at", DateTime, nullable=False),
)

skill_keywords = Table(
    "skill_keywords",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("skills_json", Text),
    Column("model", String(128)),
    Column("prompt_version", String(32)),
    Column("input_hash", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("updated_at", DateTime, nullable=False),
)

skill_keyword_items = Table(
    "skill_keyword_items",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("skill", Text, nullable=False),
    Column("importance", String(16), nullable=False),
    UniqueConstraint("posting_id", "skill", name="uq_skill_keyword_items_posting_skill"),
)
Index("ix_skill_keyword_items_skill", skill_keyword_items.c.skill)

ihl_scores = Table(
    "ihl_scores",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("ihl_score", Integer),
    Column("ihl_category", String(32)),
    Column("details_json", Text),
    Column("ihl_verdict", String(32)),
    Column("verdict_disagrees", Boolean),
    Column("confidence", String(16)),
    Column("recommendation", String(16)),
    Column("candidate_pool_estimate", String(32)),
    Column("red_flags_json", Text),
    Column("models", Text),
    Column("prompt_version", String(32)),
    Column("input_hash", String(64)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("updated_at", DateTime, nullable=False),
)

berufenet_mappings = Table(
    "berufenet_mappings",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("title_key", Text),
    Column("status", String(32), nullable=False),
    Column("berufenet_id", String(32)),
    Column("berufenet_name", Text),
    Column("kldb", String(5)),
    Column("qualification_level", Integer),
    Column("score", Float),
    Column("updated_at", DateTime, nullable=False),
)

berufenet_catalog = Table(
    "berufenet_catalog",
    baseline,
    Column("profession_id", String(16), primary_key=True),
    Column("name", Text, nullable=False),
    Column("kldb", String(5), nullable=False),
    Column("qualification_level", Integer, nullable=False),
    Column("domain_code", String(2), nullable=False),
    Column("source", String(32), nullable=False),
    Column("embed_text", Text, nullable=False),
    Column("embed_hash", String(64), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

berufenet_aliases = Table(
    "berufenet_aliases",
    baseline,
    Column("alias_key", Text, primary_key=True),
    Column("profession_id", String(16), primary_key=True),
)

berufenet_learned_aliases = Table(
    "berufenet_learned_aliases",
    baseline,
    Column("title_key", Text, primary_key=True),
    Column("title", Text),
    Column("profession_id", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("score", Float),
    Column("model", String(255)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

berufenet_failed_titles = Table(
    "berufenet_failed_titles",
    baseline,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("partition_key", String(64), nullable=False, unique=True),
    Column("title_key", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("score", Float),
    Column("candidates_json", Text),
    Column("posting_count", Integer, nullable=False, server_default="0"),
    Column("fingerprint", String(64)),
    Column("resolved", Boolean, nullable=False, server_default=false()),
    Column("resolved_profession_id", String(16)),
    Column("error", Text),
    Column("first_failed_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
Index("ix_berufenet_mappings_title_key", berufenet_mappings.c.title_key)

profession_similarity = Table(
    "profession_similarity",
    baseline,
    Column("profession_id", String(16), primary_key=True),
    Column("similar_id", String(16), primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("kldb_score", Float, nullable=False),
    Column("cosine", Float),
    Column("computed_at", DateTime, nullable=False),
)

embeddings = Table(
    "embeddings",
    baseline,
    Column("text_hash", String(64), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("text", Text),
    Column("created_at", DateTime, nullable=False),
)

posting_embeddings = Table(
    "posting_embeddings",
    baseline,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("text_hash", String(64), primary_key=True),
    Column("is_current", Boolean, nullable=False, server_default=true()),
    Column("updated_at", DateTime, nullable=False),
)
Index(
    "uq_posting_embeddings_current",
    posting_embeddings.c.posting_id,
    posting_embeddings.c.model,
    unique=True,
    sqlite_where=posting_embeddings.c.is_current,
    postgresql_where=posting_embeddings.c.is_current,
)
Index("ix_posting_embeddings_hash", posting_embeddings.c.text_hash, posting_embeddings.c.model)

demand_snapshots = Table(
    "demand_snapshots",
    baseline,
    Column("snapshot_id", Integer, primary_key=True, autoincrement=True),
    Column("snapshot_date", Date, nullable=False),
    Column("state", String(64), nullable=False),
    Column("domain_code", String(2), nullable=False),
    Column("berufenet_id", String(32)),
    Column("berufenet_name", Text),
    Column("total_postings", Integer, nullable=False),
    Column("fresh_7d", Integer, nullable=False),
    Column("fresh_14d", Integer, nullable=False),
    Column("national_avg", Float),
    Column("demand_ratio", Float),
    Column("computed_at", DateTime, nullable=False),
)
Index("ix_demand_snapshots_date", demand_snapshots.c.snapshot_date)
Index(
    "uq_demand_snapshots_domain",
    demand_snapshots.c.snapshot_date,
    demand_snapshots.c.state,
    demand_snapshots.c.domain_code,
    unique=True,
    sqlite_where=demand_snapshots.c.berufenet_id.is_(None),
    postgresql_where=demand_snapshots.c.berufenet_id.is_(None),
)
Index(
    "uq_demand_snapshots_profession",
    demand_snapshots.c.snapshot_date,
    demand_snapshots.c.state,
    demand_snapshots.c.domain_code,
    demand_snapshots.c.berufenet_id,
    unique=True,
    sqlite_where=demand_snapshots.c.berufenet_id.isnot(None),
    postgresql_where=demand_snapshots.c.berufenet_id.isnot(None),
)

llm_throughput = Table(
    "llm_throughput",
    baseline,
    Column("run_id", String(64), primary_key=True),
    Column("host", String(255), primary_key=True),
    Column("partition_date", Date, nullable=False),
    Column("finished_at", DateTime, nullable=False),
    Column("wall_s", Float, nullable=False),
    Column("postings", Float, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("calls", Integer, nullable=False),
    Column("busy_s", Float, nullable=False),
)
Index("ix_llm_throughput_finished_at", llm_throughput.c.finished_at)

Index("ix_postings_first_seen_at", postings.c.first_seen_at)
Index("ix_job_descriptions_fetched_at", job_descriptions.c.fetched_at)
Index("ix_posting_summaries_updated_at", posting_summaries.c.updated_at)
Index("ix_skill_keywords_updated_at", skill_keywords.c.updated_at)
Index("ix_ihl_scores_updated_at", ihl_scores.c.updated_at)
Index("ix_berufenet_mappings_updated_at", berufenet_mappings.c.updated_at)
Index("ix_posting_embeddings_updated_at", posting_embeddings.c.updated_at)
Index("ix_demand_snapshots_computed_at", demand_snapshots.c.computed_at)

POSTINGS_ENRICHED_SQL = """
CREATE VIEW postings_enriched AS
SELECT
    p.posting_id,
    p.source,
    p.external_id,
    p.title,
    p.partition_date,
    p.state,
    p.city,
    p.invalidated,
    p.invalidated_reason,
    p.employer,
    p.external_url,
    p.partner_url,
    p.published_date,
    p.first_seen_at,
    p.last_seen_at,
    jd.description AS job_description,
    jd.status AS description_status,
    ps.summary,
    sk.skills_json AS skill_keywords,
    ih.ihl_score,
    ih.ihl_category,
    bm.berufenet_id,
    bm.berufenet_name,
    bm.kldb,
    bm.qualification_level,
    bm.status AS berufenet_status,
    CASE WHEN EXISTS (
        SELECT 1 FROM posting_embeddings pe
        JOIN embeddings e ON e.text_hash = pe.text_hash AND e.model = pe.model
        WHERE pe.posting_id = p.posting_id AND pe.is_current = TRUE
    ) THEN TRUE ELSE FALSE END AS has_embedding
FROM postings p
LEFT JOIN job_descriptions jd ON jd.posting_id = p.posting_id
LEFT JOIN posting_summaries ps ON ps.posting_id = p.posting_id
LEFT JOIN skill_keywords sk ON sk.posting_id = p.posting_id
LEFT JOIN ihl_scores ih ON ih.posting_id = p.posting_id
LEFT JOIN berufenet_mappings bm ON bm.posting_id = p.posting_id
"""



def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    for table in baseline.sorted_tables:
        if table.name not in existing:
            table.create(bind)  # with its indexes
            continue
        # A warehouse from before Alembic: bring the table up to the baseline, as the old start-up did.
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in columns:
                # Every column added after a table's creation was nullable or had a server default.
                op.add_column(table.name, column._copy())
        indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                # Runs once per old warehouse; on a large table it takes a while (about a second per 100k
                # postings) while writers to that table wait.
                index.create(bind)
    op.execute("DROP VIEW IF EXISTS postings_enriched")
    op.execute(POSTINGS_ENRICHED_SQL)


def downgrade() -> None:
    # Back to an empty database: the warehouse has no state older than this revision to return to.
    op.execute("DROP VIEW IF EXISTS postings_enriched")
    baseline.drop_all(op.get_bind())
