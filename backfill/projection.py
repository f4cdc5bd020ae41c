"""The set-based projection of legacy JSONB into product_images (SQL in backfill/sql/)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, text

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql(name: str) -> str:
    """The text of `backfill/sql/<name>.sql`."""
    return (SQL_DIR / f"{name}.sql").read_text()


def apply_functions(connection: Connection) -> None:
    """Create or replace the `public.pim_*` helper functions."""
    connection.exec_driver_sql(sql("functions").replace("%", "%%"))


def project_products(
    connection: Connection, product_ids: Sequence[int], legacy_sources: Sequence[str]
) -> int:
    """Insert the images of the listed products that have no rows yet; return rows inserted."""
    return int(
        connection.execute(
            text(sql("project_products")),
            {"product_ids": list(product_ids), "legacy_sources": list(legacy_sources)},
        ).scalar_one()
    )


def record_rejections(connection: Connection, product_ids: Sequence[int], found_by: str) -> int:
    """Report the listed products' elements that cannot be images; return rows recorded."""
    return int(
        connection.execute(
            text(sql("record_rejections")),
            {"product_ids": list(product_ids), "found_by": found_by},
        ).scalar_one()
    )
