"""One projection text, two uses: the rows verify selects as the expected side are exactly
the rows the runner inserts, on generated dirty data; only the runner skips a product that
already has rows."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from app.images import Image, row_to_image
from backfill.projection import (
    PROJECTED_SQL,
    PROJECTION_SQL,
    ROW_COLUMNS,
    _every_listed_product,
    prepare_projection,
    project_products,
)
from tests.backfill.projection_harness import (
    LEGACY_SOURCES,
    insert_product,
    make_schema,
    read_images,
    to_json_text,
    use_schema,
)
from tests.backfill.test_projection_differential import columns
from tests.images.strategies import product_ids


@pytest.fixture(scope="module")
def schema(engine: Engine) -> str:
    """One tenant for the module; every example rolls its transaction back."""
    return make_schema(engine)


def selected(connection: Connection, product_id: int) -> list[tuple[int, Image]]:
    """What verify expects of the product: the projection as a SELECT, by order."""
    prepare_projection(connection)
    listed = ", ".join(f'"{column}"' for column in ROW_COLUMNS)
    rows = connection.execute(
        text(f'SELECT {listed} FROM ({PROJECTED_SQL}) AS p ORDER BY "order"'),
        {"product_ids": [product_id], "legacy_sources": list(LEGACY_SOURCES)},
    ).mappings()
    return [(int(row["product_id"]), row_to_image(dict(row))) for row in rows]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), product_id=product_ids, source=st.sampled_from(["pythonApiWOO", "stoflow"]))
def test_verify_expects_exactly_the_rows_the_runner_inserts(
    engine: Engine, schema: str, data: st.DataObject, product_id: int, source: str
) -> None:
    raw: Any = data.draw(columns(product_id), label="images")
    images_json = to_json_text(raw)
    assume("\\u0000" not in images_json)
    with engine.connect() as connection:
        try:
            use_schema(connection, schema)
            product = insert_product(connection, images_json, source, product_id)
            expected = selected(connection, product)
            inserted = project_products(connection, [product], LEGACY_SOURCES)
            assert expected == [(product, image) for image in read_images(connection, product)]
            assert inserted == len(expected)
        finally:
            connection.rollback()


def test_verify_projects_a_product_that_has_rows_the_runner_skips(
    engine: Engine, schema: str
) -> None:
    with engine.connect() as connection:
        try:
            use_schema(connection, schema)
            product = insert_product(connection, to_json_text([{"url": "a"}, {"url": "b"}]), "x")
            assert project_products(connection, [product], LEGACY_SOURCES) == 2
            assert project_products(connection, [product], LEGACY_SOURCES) == 0
            assert [image for _, image in selected(connection, product)] == read_images(
                connection, product
            )
        finally:
            connection.rollback()


def test_the_runner_only_filter_is_the_one_line_verify_drops() -> None:
    dropped = [line for line in PROJECTION_SQL.splitlines() if line not in PROJECTED_SQL]
    assert len(dropped) == 1 and "NOT EXISTS" in dropped[0] and "product_images" in dropped[0]
    assert "NOT EXISTS" not in PROJECTED_SQL
    with pytest.raises(RuntimeError, match="runner only"):
        _every_listed_product(PROJECTED_SQL)
