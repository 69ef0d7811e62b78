"""The warehouse as a Dagster resource: an SQLAlchemy engine with the schema in place."""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ty_pipeline.domain.setting_values import WAREHOUSE_URL
from ty_pipeline.domain.urls import redact_url
from ty_pipeline.resources.setting_fields import checked_fields
from ty_pipeline.step_retries import redacted_failure
from ty_pipeline.warehouse.engine import DEFAULT_WAREHOUSE_URL, ensure_schema, get_engine
from ty_pipeline.warehouse.errors import describe_db_error


class WarehouseResource(dg.ConfigurableResource):
    """SQLAlchemy URL of the warehouse (`TY_WAREHOUSE_URL`): SQLite by default, PostgreSQL in production."""

    url: str = Field(default=DEFAULT_WAREHOUSE_URL, description="SQLAlchemy URL, e.g. postgresql://user@host/db")

    _check_settings = checked_fields(url=WAREHOUSE_URL)

    def get_engine(self) -> Engine:
        """The engine, or a one-line `dg.Failure` naming TY_WAREHOUSE_URL (redacted) and what went wrong.

        The URL was parsed when the resource was built (`_check_url`); a server that cannot be reached (or
        drops the connection while the schema is checked) fails retryably, so the step's RetryPolicy tries
        again.
        """
        engine = get_engine(self.url)
        try:
            ensure_schema(engine)
        except SQLAlchemyError as exc:
            description = (f"TY_WAREHOUSE_URL={redact_url(self.url)!r}: the warehouse cannot be used: "
                           f"{describe_db_error(exc, self.url)}")
            raise redacted_failure(exc, description, allow_retries=True) from None
        return engine

