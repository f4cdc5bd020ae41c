"""The set-based projection of legacy JSONB into product_images (SQL in backfill/sql/).

The statements name tenant tables unqualified: run them with the tenant's schema (then
`public`, for the `pim_*` helper functions) on the search_path, e.g. `SET LOCAL search_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql(name: str) -> str:
    """The text of `backfill/sql/<name>.sql`."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


FUNCTIONS_SQL = sql("functions")
"""DDL of the `public.pim_*` helper functions (CREATE OR REPLACE; applied by migration 0006)."""

PROJECT_PRODUCTS_SQL = sql("project_products")
"""Insert the images of `:product_ids` that have no rows yet; one row: the count inserted."""

RECORD_REJECTIONS_SQL = sql("record_rejections")
"""Report the rejected parts of `:product_ids`' columns; one row: the count recorded."""


def apply_functions(connection: Connection | Session) -> None:
    """Create or replace the `public.pim_*` helper functions."""
    bind = connection.connection() if isinstance(connection, Session) else connection
    # Driver-level SQL (no bind parameters): only the DBAPI's own % placeholders need escaping.
    bind.exec_driver_sql(FUNCTIONS_SQL.replace("%", "%%"))


def project_products(
    connection: Connection | Session, product_ids: Sequence[int], legacy_sources: Sequence[str]
) -> int:
    """Insert the images of the listed products that have no rows yet; return rows inserted."""
    # pim_legacy_order reads float8 output as the shortest round-trip text (Python's repr),
    # which PostgreSQL gives when extra_float_digits >= 1 (the default); pin it here.
    connection.execute(text("SET LOCAL extra_float_digits = 1"))
    return int(
        connection.execute(
            text(PROJECT_PRODUCTS_SQL),
            {"product_ids": list(product_ids), "legacy_sources": list(legacy_sources)},
        ).scalar_one()
    )


def record_rejections(
    connection: Connection | Session, product_ids: Sequence[int], found_by: str
) -> int:
    """Report the listed products' elements that cannot be images; return rows recorded."""
    return int(
        connection.execute(
            text(RECORD_REJECTIONS_SQL),
            {"product_ids": list(product_ids), "found_by": found_by},
        ).scalar_one()
    )
