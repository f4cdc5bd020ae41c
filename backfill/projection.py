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

from app.images import IMAGE_KEYS

SQL_DIR = Path(__file__).parent / "sql"


@cache
def sql(name: str) -> str:
    """The text of `backfill/sql/<name>.sql`."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


FUNCTIONS_SQL = sql("functions")
"""DDL of the `public.pim_*` helper functions (CREATE OR REPLACE; applied by 0006, 0010, 0013)."""

PROJECTION_SQL = sql("project_products")
"""SELECT the normalised images of `:product_ids` that have no rows yet, as product_images
rows (`product_id` and the IMAGE_KEYS columns)."""

_RUNNER_ONLY = "-- runner only"


def _every_listed_product(projection: str) -> str:
    lines = projection.splitlines(keepends=True)
    marked = [line for line in lines if line.rstrip().endswith(_RUNNER_ONLY)]
    if len(marked) != 1:  # the file changed shape: fail at import, not in a verify
        raise RuntimeError(f"project_products.sql: expected one line marked {_RUNNER_ONLY!r}")
    return "".join(line for line in lines if line not in marked)


PROJECTED_SQL = _every_listed_product(PROJECTION_SQL)
"""The same projection of every listed product, rows or not (verify's expected side)."""

ROW_COLUMNS = ("product_id", *IMAGE_KEYS)
"""The columns of a product_images row the projection gives, in its order."""

_COLUMN_LIST = ", ".join(f'"{column}"' for column in ROW_COLUMNS)

PROJECT_PRODUCTS_SQL = (
    f"WITH inserted AS (INSERT INTO product_images ({_COLUMN_LIST}) "
    f"SELECT {_COLUMN_LIST} FROM ({PROJECTION_SQL}) AS projected RETURNING 1) "
    "SELECT count(*) FROM inserted"
)
"""Insert the images of `:product_ids` that have no rows yet; one row: the count inserted."""

RECORD_REJECTIONS_SQL = sql("record_rejections")
"""Report the rejected parts of `:product_ids`' columns; one row: the count recorded."""


def apply_functions(connection: Connection | Session) -> None:
    """Create or replace the `public.pim_*` helper functions."""
    bind = connection.connection() if isinstance(connection, Session) else connection
    # Driver-level SQL (no bind parameters): only the DBAPI's own % placeholders need escaping.
    bind.exec_driver_sql(FUNCTIONS_SQL.replace("%", "%%"))


def prepare_projection(connection: Connection | Session) -> None:
    """Set what the projection needs for the rest of the caller's transaction."""
    # pim_legacy_order reads float8 output as the shortest round-trip text (Python's repr),
    # which PostgreSQL gives when extra_float_digits >= 1 (the default); pin it here.
    connection.execute(text("SET LOCAL extra_float_digits = 1"))


def project_products(
    connection: Connection | Session, product_ids: Sequence[int], legacy_sources: Sequence[str]
) -> int:
    """Insert the images of the listed products that have no rows yet; return rows inserted."""
    prepare_projection(connection)
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
