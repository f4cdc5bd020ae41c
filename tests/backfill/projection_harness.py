"""Run the SQL projection on one product and compute what the Python projection says of it.

Shared by the differential property test and the explicit examples. Every run happens in
the caller's transaction, which the caller rolls back: nothing is left behind.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.images import Image, normalise_legacy, row_to_image
from app.services.tenant_service import create_tenant
from backfill.projection import apply_functions, project_products, record_rejections

LEGACY_SOURCES = ("pythonApiWOO",)
PRODUCT_CREATED_AT = datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=UTC)

Rejection = tuple[int, str, Any, str]
"""(position, reason, raw, detail), position -1 for the whole column."""


class RawNumber:
    """A JSON number written exactly as given (json.dumps cannot write 0.10000000000000001)."""

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return f"RawNumber({self.literal!r})"


_RAW_MARK = "@@raw-number@@"
_RAW_PATTERN = re.compile(rf'"{_RAW_MARK}([^"]*)"')


def to_json_text(value: object) -> str:
    """Encode a value as JSON text, writing RawNumber literals verbatim."""

    def mark(item: object) -> str:
        if isinstance(item, RawNumber):
            return f"{_RAW_MARK}{item.literal}"
        raise TypeError(f"not JSON: {item!r}")

    return _RAW_PATTERN.sub(lambda match: match.group(1), json.dumps(value, default=mark))


def make_schema(engine: Engine) -> str:
    """A new tenant schema for one test module, with the helper functions (re)applied."""
    with engine.begin() as connection:
        apply_functions(connection)
    tenant = create_tenant(engine, email=f"projection-{uuid.uuid4().hex}@example.com").id
    return tenant_schema(tenant)


def use_schema(connection: Connection, schema: str) -> None:
    """Point the projection's unqualified table names at the schema, for this transaction."""
    connection.execute(text(f"SET LOCAL search_path TO {quoted_schema(schema)}, public"))


def insert_product(
    connection: Connection, images_json: str, source: str, product_id: int | None = None
) -> int:
    """Insert a product holding the given JSON text in `images`; return its id."""
    columns = "title, price, source, images, created_at"
    values = "'p', 1, :source, CAST(:images AS jsonb), :created"
    if product_id is not None:
        columns, values = f"id, {columns}", f":id, {values}"
    return int(
        connection.execute(
            text(f"INSERT INTO products ({columns}) VALUES ({values}) RETURNING id"),
            {
                "id": product_id,
                "source": source,
                "images": images_json,
                "created": PRODUCT_CREATED_AT,
            },
        ).scalar_one()
    )


@dataclass(frozen=True)
class Outcome:
    """What the SQL projection did for one product, and the column as PostgreSQL stores it."""

    product_id: int
    stored: Any
    inserted: int
    recorded: int
    images: list[Image]
    rejected: list[Rejection]


def read_images(connection: Connection, product_id: int) -> list[Image]:
    """The product's product_images rows, as images, by order."""
    rows = connection.execute(
        text('SELECT * FROM product_images WHERE product_id = :p ORDER BY "order"'),
        {"p": product_id},
    ).mappings()
    return [row_to_image(row) for row in rows]


def read_rejected(connection: Connection, product_id: int) -> list[Rejection]:
    """The product's rejected_image_elements rows, by position."""
    rows = connection.execute(
        text(
            "SELECT position, reason, raw, detail FROM rejected_image_elements "
            "WHERE product_id = :p ORDER BY position"
        ),
        {"p": product_id},
    ).all()
    return [(row.position, row.reason, row.raw, row.detail) for row in rows]


def project_in_sql(
    connection: Connection, images_json: str, source: str, product_id: int | None = None
) -> Outcome:
    """Insert a product, run both SQL statements on it, and read back what they wrote."""
    product_id = insert_product(connection, images_json, source, product_id)
    inserted = project_products(connection, [product_id], LEGACY_SOURCES)
    recorded = record_rejections(connection, [product_id], "test")
    stored = connection.execute(
        text("SELECT images FROM products WHERE id = :p"), {"p": product_id}
    ).scalar_one()
    return Outcome(
        product_id=product_id,
        stored=stored,
        inserted=inserted,
        recorded=recorded,
        images=read_images(connection, product_id),
        rejected=read_rejected(connection, product_id),
    )


def project_in_python(outcome: Outcome, source: str) -> tuple[list[Image], list[Rejection]]:
    """normalise_legacy of the column exactly as the application reads it (via psycopg)."""
    # Python reads the column as PostgreSQL gives it back: jsonb normalises number texts
    # (1e2 -> 100) and keeps the last of duplicate keys, and so does the dual-write.
    normalised = normalise_legacy(
        outcome.stored,
        product_id=outcome.product_id,
        product_created_at=PRODUCT_CREATED_AT,
        is_legacy_source=source in LEGACY_SOURCES,
    )
    rejected = [
        (-1 if item.position is None else item.position, item.reason, item.raw, item.detail)
        for item in normalised.rejected
    ]
    return list(normalised.images), rejected


def assert_same_projection(outcome: Outcome, source: str) -> None:
    """The SQL wrote exactly the Python projection's images and rejected elements."""
    images, rejected = project_in_python(outcome, source)
    assert outcome.images == images
    assert outcome.rejected == rejected
    assert outcome.inserted == len(images)
    assert outcome.recorded == len(rejected)
