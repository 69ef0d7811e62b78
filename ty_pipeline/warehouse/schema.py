"""Warehouse tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

Each asset owns its table(s); the `postings_enriched` view joins them for readers (docs/contract.md).
Unique keys are real constraints and writes are upserts. Enrichment tables keep the reader-facing
value (summary, skill list, score, ...) NULL unless that enrichment succeeded, so a failure can never
surface as a fake value in the view.
"""

from __future__ import annotations

from typing import Any

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

from ty_pipeline.domain.posting_record import MAX_EXTERNAL_ID_BYTES

metadata = MetaData()

postings = Table(
    "postings",
    metadata,
    Column("posting_id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(32), nullable=False),
    # Any id within MAX_EXTERNAL_ID_BYTES of UTF-8 (the longest the unique key below can index on PostgreSQL;
    # domain/posting_record.py); a longer one is refused before the write and named as a lost row.
    Column("external_id", String(MAX_EXTERNAL_ID_BYTES), nullable=False),
    Column("origin", String(16), nullable=False, server_default="api"),
    Column("title", Text),
    Column("employer", Text),
    Column("beruf", Text),  # the BERUFENET label Jobsuche attaches (`hauptberuf` / `beruf`)
    Column("city", Text),
    # Postal code and country are stored as the API wrote them (cleaned): a bound there refused the whole
    # posting on PostgreSQL for one overlong value (revision 0004). `state` stays bounded: it is always one
    # of the 16 names of domain/states.py or NULL, never the API's text.
    Column("postal_code", Text),
    Column("state", String(64)),
    Column("country", Text),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("external_url", Text),
    Column("partner_url", Text),
    Column("published_date", Date),  # current publication date as last seen
    Column("first_published_date", Date),
    # The partition the posting belongs to: its publication date when we first saw it. Never moved,
    # so re-publications do not make a posting jump between partitions.
    Column("partition_date", Date, nullable=False),
    Column("first_seen_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("content_hash", String(32)),
    Column("invalidated", Boolean, nullable=False, server_default=false()),
    Column("invalidated_reason", String(64)),
    Column("invalidated_at", DateTime),
    # Detail re-checks of a posting the source declared gone but a later listing still carried
    # (docs/domain_rules.md §9): how many were made, and when the next one is due.
    Column("rechecks", Integer, nullable=False, server_default="0"),
    Column("recheck_after", DateTime),
    UniqueConstraint("source", "external_id", name="uq_postings_source_external_id"),
)
Index("ix_postings_partition_date", postings.c.partition_date)
# "Active on a date" (demand snapshots, their check): published by then, not invalidated by then. On
# PostgreSQL it also covers the state and the id, so the snapshot reads this index instead of the wide rows.
Index(
    "ix_postings_active",
    postings.c.partition_date,
    postings.c.invalidated,
    postings.c.invalidated_at,
    postgresql_include=["state", "posting_id"],
)
# The distinct stored spellings of the states (a few dozen), read by skipping through this index.
Index("ix_postings_state", postings.c.state)
Index("ix_postings_source_last_seen", postings.c.source, postings.c.last_seen_at)

job_descriptions = Table(
    "job_descriptions",
    metadata,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("description", Text),  # NULL unless status is ok / too_short
    Column("partner_url", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("http_status", Integer),
    Column("last_error", Text),
    Column("fetched_at", DateTime, nullable=False),
)
Index("ix_job_descriptions_status", job_descriptions.c.status)

# Which run is fetching a posting's description right now, so a second run of the same partition skips
# it instead of fetching every description twice. Rows live only while their run works; a run that died
# leaves rows that expire (or that a later run takes over once the instance reports that run finished).
description_leases = Table(
    "description_leases",
    metadata,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("claimed_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)
Index("ix_description_leases_run", description_leases.c.run_id)


def _llm_result_table(name: str, *columns: Column[Any]) -> Table:
    """A per-posting LLM result table (summaries, skills, IHL): the posting and its status, the asset's
    own columns, then the memo record every LLM asset keeps alike (`warehouse/llm_results_store.py`):
    the prompt version and input hash that produced the row, attempts, the last error."""
    return Table(
        name,
        metadata,
        Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
        Column("status", String(32), nullable=False),
        *columns,
        Column("prompt_version", String(32)),
        Column("input_hash", String(64)),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("error", Text),
        Column("updated_at", DateTime, nullable=False),
    )


posting_summaries = _llm_result_table(
    "posting_summaries",
    Column("summary", Text),  # rendered text; NULL unless grading passed
    Column("fields_json", Text),
    Column("grades_json", Text),
    Column("models", Text),
)

skill_keywords = _llm_result_table(
    "skill_keywords",
    Column("skills_json", Text),  # JSON array of distinct skill names; NULL unless status ok
    Column("model", String(128)),
)

# One row per skill of a posting's stored list (`skill_keywords` asset), replaced with that list.
skill_keyword_items = Table(
    "skill_keyword_items",
    metadata,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("rank", Integer, primary_key=True),  # 1 = first in `skill_keywords.skills_json`
    Column("skill", Text, nullable=False),
    Column("importance", String(16), nullable=False),  # essential | critical | important | preferred
    UniqueConstraint("posting_id", "skill", name="uq_skill_keyword_items_posting_skill"),
)
Index("ix_skill_keyword_items_skill", skill_keyword_items.c.skill)

ihl_scores = _llm_result_table(
    "ihl_scores",
    Column("ihl_score", Integer),  # 0-10; NULL unless status ok
    Column("ihl_category", String(32)),
    Column("details_json", Text),  # the three role outputs (analyst, skeptic, hr_expert) and the result
    # The HR expert's other answers, NULL unless status ok (added with the LLM assets; all nullable).
    Column("ihl_verdict", String(32)),  # the model's verdict word; the category above comes from the score
    Column("verdict_disagrees", Boolean),  # verdict word != category of its own score
    Column("confidence", String(16)),
    Column("recommendation", String(16)),
    Column("candidate_pool_estimate", String(32)),
    Column("red_flags_json", Text),
    Column("models", Text),
)

berufenet_mappings = Table(
    "berufenet_mappings",
    metadata,
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

# -- professions: the catalog the mapper classifies into, and what the mapper learned ---------------------

# The profession catalog (`berufenet_catalog` asset), replaced as a whole in one transaction. `embed_hash`
# is the content hash of `embed_text`, the key of the name's vector in `embeddings` (one per model).
berufenet_catalog = Table(
    "berufenet_catalog",
    metadata,
    Column("profession_id", String(16), primary_key=True),  # "43414-102", or a bare KldB code "43414"
    Column("name", Text, nullable=False),
    Column("kldb", String(5), nullable=False),
    Column("qualification_level", Integer, nullable=False),
    Column("domain_code", String(2), nullable=False),
    Column("source", String(32), nullable=False),  # kldb | kldb_occupation | seed | berufenet
    Column("embed_text", Text, nullable=False),
    Column("embed_hash", String(64), nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# The catalog's alias index (`title_key` spellings of every name -> professions), rebuilt with the catalog.
berufenet_aliases = Table(
    "berufenet_aliases",
    metadata,
    Column("alias_key", Text, primary_key=True),
    Column("profession_id", String(16), primary_key=True),
)

# Titles the mapper resolved beyond the catalog's own names (embedding, LLM, description retry): looked up
# before any model is asked again, in every later partition and run.
berufenet_learned_aliases = Table(
    "berufenet_learned_aliases",
    metadata,
    Column("title_key", Text, primary_key=True),
    Column("title", Text),
    Column("profession_id", String(16), nullable=False),
    Column("status", String(32), nullable=False),  # the status under which it was learned
    Column("score", Float),
    Column("model", String(255)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# Titles that ended unresolved, one row per title: the memo that keeps them from being classified again
# under the same settings (`fingerprint`), and the dynamic-partition key -> title table of the retry asset.
# `seq` only grows, so the registering sensor keeps a cursor on it.
berufenet_failed_titles = Table(
    "berufenet_failed_titles",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("partition_key", String(64), nullable=False, unique=True),
    Column("title_key", Text, nullable=False, unique=True),
    Column("title", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("score", Float),
    Column("candidates_json", Text),  # top-k [{profession_id, score}] from the embedding stage
    Column("posting_count", Integer, nullable=False, server_default="0"),
    Column("fingerprint", String(64)),
    Column("resolved", Boolean, nullable=False, server_default=false()),
    Column("resolved_profession_id", String(16)),
    Column("error", Text),  # why the title is unresolved: the last stage or retry error
    Column("first_failed_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)
Index("ix_berufenet_mappings_title_key", berufenet_mappings.c.title_key)

# Nearest professions per profession (`profession_similarity` asset), full refresh.
profession_similarity = Table(
    "profession_similarity",
    metadata,
    Column("profession_id", String(16), primary_key=True),
    Column("similar_id", String(16), primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("kldb_score", Float, nullable=False),
    Column("cosine", Float),
    Column("computed_at", DateTime, nullable=False),
)

# Content-addressed vectors shared by posting texts and catalog names (float32 bytes).
embeddings = Table(
    "embeddings",
    metadata,
    Column("text_hash", String(64), primary_key=True),
    Column("model", String(255), primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("text", Text),
    Column("created_at", DateTime, nullable=False),
)

# Which vector a posting is embedded with. One row per (posting, model, text) ever embedded: when a
# posting's text changes, the old row stays as history with is_current false. At most one current row
# per (posting, model) is a real constraint (partial unique index), not a convention.
posting_embeddings = Table(
    "posting_embeddings",
    metadata,
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
    metadata,
    Column("snapshot_id", Integer, primary_key=True, autoincrement=True),
    Column("snapshot_date", Date, nullable=False),
    Column("state", String(64), nullable=False),
    Column("domain_code", String(2), nullable=False),
    Column("berufenet_id", String(32)),  # NULL on domain rows
    Column("berufenet_name", Text),
    Column("total_postings", Integer, nullable=False),
    Column("fresh_7d", Integer, nullable=False),
    Column("fresh_14d", Integer, nullable=False),
    Column("national_avg", Float),
    Column("demand_ratio", Float),
    Column("computed_at", DateTime, nullable=False),
)
Index("ix_demand_snapshots_date", demand_snapshots.c.snapshot_date)
# One row per (date, state, domain) and per (date, state, domain, profession). NULL berufenet_id marks
# domain rows, and NULLs never collide in a plain unique key, so each level gets its own partial index.
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

# Raw API payloads, one per posting, out of the wide `postings` table (issue #13: ~1 kB per row made every
# scan of postings read pages of JSON nobody filters on). Written when the posting's content changes.
posting_payloads = Table(
    "posting_payloads",
    metadata,
    Column("posting_id", Integer, ForeignKey("postings.posting_id", ondelete="CASCADE"), primary_key=True),
    Column("content_hash", String(64)),  # the posting's content_hash this payload belongs to
    Column("raw_json", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# What each `llm_enrichment` run achieved per LLM host: one row per (run, host). The run's cap, scope
# and the status CLI's postings/hour and ETA come from the recent rows (domain/llm_capacity.py).
llm_throughput = Table(
    "llm_throughput",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("host", String(255), primary_key=True),  # redacted URL: scheme://host:port
    Column("partition_date", Date, nullable=False),
    Column("finished_at", DateTime, nullable=False),
    Column("wall_s", Float, nullable=False),  # the run's first to last task
    Column("postings", Float, nullable=False),  # the run's posting-equivalents (all hosts)
    Column("slots", Integer, nullable=False),
    Column("calls", Integer, nullable=False),  # calls this host answered in the run
    Column("busy_s", Float, nullable=False),  # slot-seconds this host spent on them
)
Index("ix_llm_throughput_finished_at", llm_throughput.c.finished_at)

# The status CLI counts each asset's rows finished in the last hours by its time column
# (ty_pipeline/domain/status_registry.py); without an index each count scanned the whole table (issue #13:
# 310 ms -> 0.4 ms for `postings.first_seen_at` on 400k postings). The stale-invalidation sweep filters on
# `first_seen_at` too.
Index("ix_postings_first_seen_at", postings.c.first_seen_at)
Index("ix_job_descriptions_fetched_at", job_descriptions.c.fetched_at)
Index("ix_posting_summaries_updated_at", posting_summaries.c.updated_at)
Index("ix_skill_keywords_updated_at", skill_keywords.c.updated_at)
Index("ix_ihl_scores_updated_at", ihl_scores.c.updated_at)
Index("ix_berufenet_mappings_updated_at", berufenet_mappings.c.updated_at)
Index("ix_posting_embeddings_updated_at", posting_embeddings.c.updated_at)
Index("ix_demand_snapshots_computed_at", demand_snapshots.c.computed_at)

# The read side of the contract. Plain SQL that both SQLite and PostgreSQL accept.
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

VIEWS: dict[str, str] = {"postings_enriched": POSTINGS_ENRICHED_SQL}
