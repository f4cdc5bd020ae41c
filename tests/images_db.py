"""Test helpers that read both representations of a product's images straight from SQL."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.images import image_to_element, normalise_legacy, row_to_image


def insert_legacy_product(
    engine: Engine, tenant_id: int, images: Any, *, source: str = "pythonApiWOO"
) -> int:
    """A product as the old backend left it: images in the legacy JSONB format."""
    with engine.begin() as connection:
        return int(
            connection.execute(
                text(
                    f'INSERT INTO "{tenant_schema(tenant_id)}".products '
                    "(title, price, source, images, created_at) "
                    "VALUES ('Levi''s 501', 30, :source, CAST(:images AS jsonb), "
                    "'2024-05-01T10:00:00+00:00') RETURNING id"
                ),
                {"source": source, "images": json.dumps(images)},
            ).scalar_one()
        )


def jsonb_elements(engine: Engine, tenant_id: int, product_id: int) -> Any:
    """The product's JSONB column, decoded."""
    with engine.connect() as connection:
        return connection.execute(
            text(f'SELECT images FROM "{tenant_schema(tenant_id)}".products WHERE id = :id'),
            {"id": product_id},
        ).scalar_one()


def table_elements(engine: Engine, tenant_id: int, product_id: int) -> list[dict[str, object]]:
    """The product's table rows, as JSONB elements, by order."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                f'SELECT * FROM "{tenant_schema(tenant_id)}".product_images '
                'WHERE product_id = :id ORDER BY "order"'
            ),
            {"id": product_id},
        ).mappings()
        return [image_to_element(row_to_image(row)) for row in rows]


def assert_representations_equal(engine: Engine, tenant_id: int, product_id: int) -> None:
    """Table and JSONB hold the same images, field for field, with orders 0..n-1."""
    in_table = table_elements(engine, tenant_id, product_id)
    in_jsonb = jsonb_elements(engine, tenant_id, product_id)
    assert in_jsonb == in_table
    assert [element["order"] for element in in_table] == list(range(len(in_table)))
    assert sum(1 for element in in_table if element["is_label"]) <= 1


def expected_elements(engine: Engine, tenant: int, product_id: int) -> list[dict[str, object]]:
    """What the table must hold for the product: its JSONB through the Python normalisation."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                f'SELECT images, source, created_at FROM "{tenant_schema(tenant)}".products '
                "WHERE id = :id"
            ),
            {"id": product_id},
        ).one()
    normalised = normalise_legacy(
        row.images,
        product_id=product_id,
        product_created_at=row.created_at,
        is_legacy_source=row.source == "pythonApiWOO",
    )
    return [image_to_element(image) for image in normalised.images]
