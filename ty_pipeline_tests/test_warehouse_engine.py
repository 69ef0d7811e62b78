"""The PostgreSQL engine keeps every `options` the URL gives next to its own idle-transaction timeout."""

from __future__ import annotations

import sqlalchemy as sa

from ty_pipeline.warehouse.engine import dispose_engine, get_engine


def test_repeated_url_options_all_reach_the_server(pg_schema_url: str) -> None:
    # `?options=a&options=b` parses as a tuple; joining it as one string raised TypeError before.
    url = f"{pg_schema_url}&options=-cstatement_timeout%3D61000"
    schema = pg_schema_url.rsplit("%3D", 1)[1]
    try:
        with get_engine(url).connect() as conn:
            assert conn.execute(sa.text("SHOW search_path")).scalar() == schema
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "61s"
            assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar() == "5min"
    finally:
        dispose_engine(url)


def test_single_url_option_and_the_timeout(pg_schema_url: str) -> None:
    with get_engine(pg_schema_url).connect() as conn:
        assert conn.execute(sa.text("SHOW idle_in_transaction_session_timeout")).scalar() == "5min"
        assert conn.execute(sa.text("SHOW search_path")).scalar() == pg_schema_url.rsplit("%3D", 1)[1]
