"""Throw-away PostgreSQL schemas on the test server, for the tests (conftest.py) and the benchmarks (bench/).

No pytest here: the benchmarks are plain scripts and import this module too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from ty_pipeline.warehouse.engine import dispose_engine

PG_URL = os.environ.get("TY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_unreachable() -> Exception | None:
    """Why `PG_URL` cannot be used (the error connecting or querying), or None when it answers."""
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any reason the server is unusable
        return exc


@contextmanager
def pg_schema(prefix: str, *, keep: bool = False, reuse: str | None = None) -> Iterator[str]:
    """A URL of `PG_URL` whose search_path is a fresh schema `<prefix><12 hex>`, dropped with everything in it
    afterwards.

    `keep` leaves it in place (a benchmark measures again without rebuilding); `reuse` names a schema kept
    that way, which is then neither created nor dropped.
    """
    admin = sa.create_engine(PG_URL)
    schema = reuse or f"{prefix}{uuid.uuid4().hex[:12]}"
    if reuse is None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        dispose_engine(url)
        if keep or reuse is not None:
            print(f"schema {schema} kept (drop it with: DROP SCHEMA \"{schema}\" CASCADE)")
        else:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
