"""The set-based SQL projection and the Python projection agree, row for row, on generated
dirty data: the backfill gives exactly what the dual-write gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from app.core.database import tenant_schema
from app.images import normalise_legacy, row_to_image
from app.services.tenant_service import create_tenant
from backfill.projection import project_products, record_rejections
from tests.images.strategies import dirty_legacy_columns, mixed_format_arrays

LEGACY = ("pythonApiWOO",)
CREATED = datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def schema(engine: Engine) -> str:
    return tenant_schema(create_tenant(engine, email="differential@example.com").id)


def project_in_sql(
    connection: Connection, schema: str, raw: Any, source: str
) -> tuple[list[Any], list[tuple[int, str, Any]]]:
    connection.execute(text(f"SET LOCAL search_path TO {schema}, public"))
    product_id = connection.execute(
        text(
            "INSERT INTO products (title, price, source, images, created_at) "
            "VALUES ('p', 1, :source, CAST(:images AS jsonb), :created) RETURNING id"
        ),
        {"source": source, "images": json.dumps(raw), "created": CREATED},
    ).scalar_one()
    project_products(connection, [product_id], LEGACY)
    record_rejections(connection, [product_id], "test")
    rows = connection.execute(
        text('SELECT * FROM product_images WHERE product_id = :p ORDER BY "order"'),
        {"p": product_id},
    ).mappings()
    rejected = connection.execute(
        text(
            "SELECT position, reason, raw FROM rejected_image_elements "
            "WHERE product_id = :p ORDER BY position"
        ),
        {"p": product_id},
    ).all()
    stored = connection.execute(
        text("SELECT images FROM products WHERE id = :p"), {"p": product_id}
    ).scalar_one()
    return [product_id, stored, [row_to_image(dict(row)) for row in rows]], [
        (r.position, r.reason, r.raw) for r in rejected
    ]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    raw=st.one_of(dirty_legacy_columns, mixed_format_arrays()),
    source=st.sampled_from(["pythonApiWOO", "stoflow"]),
)
def test_sql_and_python_projections_give_identical_rows(
    engine: Engine, schema: str, raw: Any, source: str
) -> None:
    assume("\\u0000" not in json.dumps(raw))  # PostgreSQL text (and so jsonb) cannot hold NUL
    with engine.connect() as connection:
        try:
            (product_id, stored, sql_images), sql_rejected = project_in_sql(
                connection, schema, raw, source
            )
        finally:
            connection.rollback()  # each example leaves nothing behind
    # Python reads the column as PostgreSQL gives it back (jsonb normalises number texts).
    expected = normalise_legacy(
        stored,
        product_id=product_id,
        product_created_at=CREATED,
        is_legacy_source=source in LEGACY,
    )
    assert sql_images == list(expected.images)
    python_rejected = [
        (-1 if r.position is None else r.position, r.reason, r.raw) for r in expected.rejected
    ]
    assert sql_rejected == python_rejected
