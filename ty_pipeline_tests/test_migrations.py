"""Warehouse migrations (Alembic) on SQLite and PostgreSQL: from empty, from the pre-Alembic schema, at head.

The comparison with schema.py uses Alembic's autogenerate API, so a change to schema.py without a
revision in ty_pipeline/warehouse/migrations/versions/ fails `test_an_empty_warehouse_upgraded_to_head_*`.
"""

from __future__ import annotations

import importlib
import threading
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ty_pipeline import cli
from ty_pipeline.warehouse.engine import dispose_engine, ensure_schema, get_engine
from ty_pipeline.warehouse.migrations import (
    UnknownRevisionError,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from ty_pipeline.warehouse.schema import (
    VIEWS,
    description_leases,
    ihl_scores,
    job_descriptions,
    metadata,
    posting_payloads,
    postings,
)
from ty_pipeline_tests.helpers import table_rows

# What the start-up code before Alembic added to a warehouse created by an earlier version of it, so an old
# warehouse can lack them: tables, columns of existing tables, and indexes.
LATER_TABLES = [
    "description_leases", "skill_keyword_items", "berufenet_catalog", "berufenet_aliases",
    "berufenet_learned_aliases", "berufenet_failed_titles", "profession_similarity", "llm_throughput",
]
LATER_COLUMNS = {
    "postings": ["rechecks", "recheck_after"],
    "ihl_scores": ["ihl_verdict", "verdict_disagrees", "confidence", "recommendation",
                   "candidate_pool_estimate", "red_flags_json"],
}
LATER_INDEXES = [
    "ix_postings_active", "ix_postings_state", "ix_postings_first_seen_at", "ix_job_descriptions_fetched_at",
    "ix_posting_summaries_updated_at", "ix_skill_keywords_updated_at", "ix_ihl_scores_updated_at",
    "ix_berufenet_mappings_updated_at", "ix_posting_embeddings_updated_at", "ix_demand_snapshots_computed_at",
]


def _diffs(engine: sa.Engine, target: sa.MetaData = metadata) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, target)


def _view_definition(conn: sa.Connection, name: str) -> str:
    if conn.dialect.name == "sqlite":
        sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = :n"), {"n": name})
        return sql.scalar_one().replace(name, "<view>")
    return conn.execute(sa.text("SELECT pg_get_viewdef(CAST(:n AS regclass))"), {"n": name}).scalar_one()


def _version_table_rows(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def test_an_empty_warehouse_upgraded_to_head_has_exactly_the_schema_of_schema_py(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    result = upgrade_to_head(engine)
    assert (result.before, result.after) == (None, head_revision())
    diffs = _diffs(engine)
    assert diffs == [], (
        "schema.py and the migrations disagree: add a revision to ty_pipeline/warehouse/migrations/versions/ "
        f"(alembic revision --autogenerate --rev-id NNNN -m '...'). Differences: {diffs}"
    )
    with engine.connect() as conn:
        assert _version_table_rows(conn) == [head_revision()]


def test_the_comparison_sees_a_column_added_to_schema_py_without_a_revision(warehouse_url: str) -> None:
    """The guard above can fail: a column only in the model is reported."""
    engine = get_engine(warehouse_url)
    upgrade_to_head(engine)
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["postings"].append_column(sa.Column("salary", sa.Integer))
    assert [d[:2] for d in _diffs(engine, changed)] == [("add_column", None)]


def test_the_views_the_migrations_create_are_the_views_of_schema_py(warehouse_url: str) -> None:
    """A view whose SQL changes in schema.py needs a revision that recreates it."""
    engine = get_engine(warehouse_url)
    upgrade_to_head(engine)
    with engine.begin() as conn:
        for name, sql in VIEWS.items():
            conn.execute(sa.text(sql.replace(f"CREATE VIEW {name}", "CREATE VIEW expected_view")))
            assert _view_definition(conn, name) == _view_definition(conn, "expected_view"), name
            conn.execute(sa.text("DROP VIEW expected_view"))


def _build_pre_alembic_warehouse(engine: sa.Engine, *, old: bool) -> None:
    """A warehouse as the start-up code before Alembic left it: today's schema, or (old) an early one.

    The early one lacks the tables, columns and indexes that code added later on its own. Either way it has
    the view and rows, and no alembic_version table.
    """
    baseline = importlib.import_module("ty_pipeline.warehouse.migrations.versions.0001_baseline")
    with engine.begin() as conn:
        baseline.baseline.create_all(conn)  # the schema of the code before Alembic (revision 0001's copy)
        conn.execute(sa.text(baseline.POSTINGS_ENRICHED_SQL))
        if old:
            conn.execute(sa.text("DROP VIEW postings_enriched"))  # SQLite re-checks views on DROP COLUMN
            for name in LATER_INDEXES:
                conn.execute(sa.text(f"DROP INDEX {name}"))
            for name in LATER_TABLES:
                conn.execute(sa.text(f"DROP TABLE {name}"))
            for table, columns in LATER_COLUMNS.items():
                for column in columns:
                    conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
            conn.execute(sa.text(baseline.POSTINGS_ENRICHED_SQL))
        conn.execute(sa.text(
            "INSERT INTO postings (posting_id, source, external_id, origin, partition_date, first_seen_at, "
            "last_seen_at, invalidated, content_hash, raw_json) "
            "VALUES (1, 'dbank', 'old-1', 'api', :d, :t, :t, false, 'h1', '{\"id\": \"old-1\"}')"
        ), {"d": date(2026, 11, 1), "t": datetime(2026, 11, 1, 2)})
        conn.execute(sa.text(
            "INSERT INTO ihl_scores (posting_id, status, ihl_score, attempts, updated_at) "
            "VALUES (1, 'ok', 7, 1, :t)"
        ), {"t": datetime(2026, 11, 1, 3)})


@pytest.mark.parametrize("old", [True, False], ids=["early_schema", "current_schema"])
def test_a_warehouse_from_before_migrations_is_brought_to_head_and_keeps_its_rows(
    warehouse_url: str, old: bool
) -> None:
    engine = get_engine(warehouse_url)
    _build_pre_alembic_warehouse(engine, old=old)
    if old:
        assert [d[0] for d in _diffs(engine)].count("add_table") == len(LATER_TABLES) + 1  # + posting_payloads (0003)

    ensure_schema(engine)

    assert _diffs(engine) == []
    with engine.connect() as conn:
        assert _version_table_rows(conn) == [head_revision()]
        row = conn.execute(sa.select(postings.c.external_id, postings.c.rechecks)).one()
        assert tuple(row) == ("old-1", 0)  # the row kept; the column added later got its server default
        assert conn.execute(sa.select(ihl_scores.c.ihl_score, ihl_scores.c.ihl_verdict)).one() == (7, None)
        enriched = conn.execute(sa.text("SELECT external_id, ihl_score FROM postings_enriched")).one()
        assert tuple(enriched) == ("old-1", 7)
        # Revision 0003: the raw payload moved to its side table, the wide column is gone.
        payload = conn.execute(sa.select(posting_payloads.c.posting_id, posting_payloads.c.content_hash,
                                         posting_payloads.c.raw_json)).one()
        assert tuple(payload) == (1, "h1", '{"id": "old-1"}')
        assert "raw_json" not in {c["name"] for c in sa.inspect(conn).get_columns("postings")}


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_a: seen.append(sql))
    return seen


def test_at_head_the_upgrade_changes_nothing(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    dispose_engine(warehouse_url)  # a new process: nothing cached
    engine = get_engine(warehouse_url)
    seen = _statements(engine)

    result = upgrade_to_head(engine)

    assert (result.before, result.after, result.changed) == (head_revision(), head_revision(), False)
    # Only reads: no lock, no DDL, no write to alembic_version.
    writes = [s for s in seen if not s.lstrip().upper().startswith(("SELECT", "PRAGMA"))]
    assert writes == []
    assert _diffs(engine) == []


def test_ensure_schema_does_its_work_once_per_engine_and_process(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    seen = _statements(engine)
    ensure_schema(engine)
    assert seen == []


def test_processes_starting_at_once_on_an_empty_warehouse_all_succeed(warehouse_url: str) -> None:
    """The parallel steps of one run each bring the schema up when they start; one migrates, the others wait.

    Threads with their own connections stand in for processes: the lock is the database's, not Python's.
    """
    engine = get_engine(warehouse_url)
    start = threading.Barrier(4)
    results, errors = [], []

    def step() -> None:
        start.wait()
        try:
            results.append(upgrade_to_head(engine))
        except Exception as exc:  # collected and asserted below, with the traceback's message
            errors.append(exc)

    threads = [threading.Thread(target=step) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {r.after for r in results} == {head_revision()}
    assert sum(r.changed for r in results) == 1  # exactly one of them ran the baseline
    with engine.connect() as conn:
        assert _version_table_rows(conn) == [head_revision()]


def test_a_warehouse_at_a_revision_this_code_does_not_know_is_refused_with_the_way_out(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    upgrade_to_head(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(UnknownRevisionError, match=r"revision '0999'.*a newer version migrated it\. Deploy"):
        upgrade_to_head(engine)
    with engine.connect() as conn:
        assert current_revision(conn) == "0999"  # left as it was


def test_migrate_command_prints_the_revision_before_and_after(warehouse_url: str, capsys) -> None:
    assert cli.main(["migrate", "--warehouse-url", warehouse_url]) == 0
    out = capsys.readouterr().out
    assert f"schema revision none (empty, or made before migrations) -> {head_revision()}\n" in out
    assert _diffs(get_engine(warehouse_url)) == []

    assert cli.main(["migrate", "--warehouse-url", warehouse_url]) == 0
    assert f"schema revision {head_revision()}, already the newest\n" in capsys.readouterr().out


def test_migrate_command_never_prints_the_password(capsys) -> None:
    url = "postgresql://ty:s3cret-pw@127.0.0.1:1/ty_warehouse"  # nothing listens on port 1
    assert cli.main(["migrate", "--warehouse-url", url]) == 2
    captured = capsys.readouterr()
    assert "cannot migrate the warehouse at postgresql://127.0.0.1:1" in captured.err
    assert "s3cret" not in captured.out + captured.err


def test_the_payload_revision_moves_raw_json_out_and_back_without_losing_a_row(warehouse_url: str) -> None:
    from alembic import command

    from ty_pipeline.warehouse.migrations import alembic_config

    engine = get_engine(warehouse_url)
    _build_pre_alembic_warehouse(engine, old=False)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0003")
        assert conn.execute(sa.select(posting_payloads.c.raw_json)).scalar_one() == '{"id": "old-1"}'
        command.downgrade(alembic_config(conn), "0002")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT raw_json FROM postings")).scalar_one() == '{"id": "old-1"}'
        assert "posting_payloads" not in sa.inspect(conn).get_table_names()
        assert conn.execute(sa.text("SELECT ihl_score FROM postings_enriched")).scalar_one() == 7


def _warehouse_at_0003_with_rows_at_the_old_limits(engine: sa.Engine) -> None:
    """Revision 0003 with rows: one whose id, postal code and country fill VARCHAR(255), (16) and (64), and
    rows in side tables that point at the postings (a rebuild of `postings` would cascade them away)."""
    from alembic import command

    from ty_pipeline.warehouse.migrations import alembic_config

    _build_pre_alembic_warehouse(engine, old=False)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0003")
    t = datetime(2026, 11, 2, 2)
    with engine.begin() as conn:
        conn.execute(sa.insert(postings).values(
            posting_id=2, source="arbeitsagentur", external_id="10001-" + "9" * 249, origin="api", title="Bäcker",
            postal_code="3" * 16, country="Ü" * 64, partition_date=date(2026, 11, 2), first_seen_at=t,
            last_seen_at=t, content_hash="h2", invalidated=False))
        conn.execute(sa.insert(posting_payloads).values(posting_id=2, content_hash="h2", raw_json="{}", updated_at=t))
        conn.execute(sa.insert(job_descriptions).values(posting_id=2, status="ok", description="Brot backen",
                                                        attempts=1, fetched_at=t))
        conn.execute(sa.insert(description_leases).values(posting_id=1, run_id="r1", claimed_at=t, expires_at=t))


def _posting_types(engine: sa.Engine) -> tuple[str, ...]:
    """The declared types of postings.external_id, postal_code and country."""
    with engine.connect() as conn:
        columns = {c["name"]: c["type"] for c in sa.inspect(conn).get_columns("postings")}
    return tuple(str(columns[name].compile(dialect=engine.dialect)) for name in ("external_id", "postal_code", "country"))


def test_revision_0004_widens_posting_ids_and_keeps_every_row(warehouse_url: str) -> None:
    engine = get_engine(warehouse_url)
    _warehouse_at_0003_with_rows_at_the_old_limits(engine)
    tables = [name for name in metadata.tables]
    before = table_rows(warehouse_url, *tables)
    assert len(before["postings"]) == 2 and len(before["job_descriptions"]) == 1

    ensure_schema(engine)  # what the first step of the new version does: 0003 -> head

    assert _diffs(engine) == []
    assert _posting_types(engine) == ("VARCHAR(2048)", "TEXT", "TEXT")  # declared on SQLite too
    assert table_rows(warehouse_url, *tables) == before  # every row of every table, as it was
    with engine.connect() as conn:
        assert _version_table_rows(conn) == [head_revision()]
        assert conn.execute(sa.text("SELECT count(*) FROM postings_enriched")).scalar_one() == 2
    # Now an id of 2,000 characters, a long postal code and country are stored as they are, and the unique
    # key (source, external_id) still holds for them.
    long_id, t = "70001-" + "7" * 1994, datetime(2026, 11, 3, 2)
    values = dict(source="deutsche_bank", external_id=long_id, origin="api", postal_code="34117 " * 10,
                  country="Bundesrepublik Deutschland " * 5, partition_date=date(2026, 11, 3), first_seen_at=t,
                  last_seen_at=t, invalidated=False)
    with engine.begin() as conn:
        conn.execute(sa.insert(postings).values(posting_id=3, **values))  # ids set: no sequence on PostgreSQL
    with engine.connect() as conn:
        stored = conn.execute(sa.select(postings.c.external_id, postings.c.postal_code, postings.c.country)
                              .where(postings.c.source == "deutsche_bank")).one()
    assert tuple(stored) == (long_id, values["postal_code"], values["country"])
    with pytest.raises(sa.exc.IntegrityError, match="uq_postings_source_external_id|UNIQUE constraint failed: "
                       "postings.source, postings.external_id"), engine.begin() as conn:
        conn.execute(sa.insert(postings).values(posting_id=4, **values))


def test_revision_0004_downgrades_and_refuses_while_postgresql_rows_need_the_wider_columns(
    warehouse_url: str
) -> None:
    from alembic import command

    from ty_pipeline.warehouse.migrations import alembic_config

    engine = get_engine(warehouse_url)
    _warehouse_at_0003_with_rows_at_the_old_limits(engine)
    ensure_schema(engine)
    assert _posting_types(engine) == ("VARCHAR(2048)", "TEXT", "TEXT")
    with engine.begin() as conn:
        conn.execute(sa.update(postings).where(postings.c.posting_id == 2).values(external_id="x" * 256))
    if engine.dialect.name == "postgresql":
        with pytest.raises(RuntimeError, match=r"cannot downgrade below 0004: .*1 with external_id longer than 255"), \
                engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0003")
        with engine.begin() as conn:
            assert current_revision(conn) == head_revision()  # rolled back as a whole
            conn.execute(sa.update(postings).where(postings.c.posting_id == 2).values(external_id="x" * 255))
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0003")
    assert _posting_types(engine) == ("VARCHAR(255)", "VARCHAR(16)", "VARCHAR(64)")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM postings_enriched")).scalar_one() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM job_descriptions")).scalar_one() == 1
