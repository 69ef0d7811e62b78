"""The warehouse as a Dagster resource: an SQLAlchemy engine with the schema in place."""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine

from ty_pipeline.warehouse.engine import DEFAULT_WAREHOUSE_URL, ensure_schema, get_engine


class WarehouseResource(dg.ConfigurableResource):
    """SQLAlchemy URL of the warehouse (`TY_WAREHOUSE_URL`): SQLite by default, PostgreSQL in production."""

    url: str = Field(default=DEFAULT_WAREHOUSE_URL, description="SQLAlchemy URL, e.g. postgresql://user@host/db")

    def get_engine(self) -> Engine:
        engine = get_engine(self.url)
        ensure_schema(engine)
        return engine
