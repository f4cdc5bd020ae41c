"""An image has two lossless representations: a JSONB element and a table row."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import given

from app.images.errors import InvalidImageField
from app.images.projection import element_to_image, image_to_element, image_to_row, row_to_image
from app.images.record import IMAGE_KEYS, Image
from tests.images.strategies import fixed_offset, images

EXAMPLE = Image(
    id=UUID("3f0c1b7e-8a51-4c7e-9a3e-5b2f8c0d1e2a"),
    url="https://cdn.example.com/p/1.jpg",
    order=0,
    is_label=True,
    alt_text="Blue vase, price tag",
    tags=("price-tag", "front"),
    mime_type="image/jpeg",
    file_size=123_456,
    width=800,
    height=600,
    created_at=datetime(2026, 1, 15, 10, 16, 52, 123456, tzinfo=fixed_offset(60)),
    updated_at=datetime(2026, 1, 15, 9, 16, 52, tzinfo=UTC),
)


def test_element_has_all_twelve_keys_in_json_friendly_types() -> None:
    element = image_to_element(EXAMPLE)
    assert tuple(element) == IMAGE_KEYS
    assert element["id"] == "3f0c1b7e-8a51-4c7e-9a3e-5b2f8c0d1e2a"
    assert element["tags"] == ["price-tag", "front"]
    json.dumps(element)


def test_element_timestamps_are_utc_with_microseconds() -> None:
    element = image_to_element(EXAMPLE)
    assert element["created_at"] == "2026-01-15T09:16:52.123456+00:00"
    assert element["updated_at"] == "2026-01-15T09:16:52.000000+00:00"


def test_row_has_the_table_columns() -> None:
    row = image_to_row(EXAMPLE, product_id=7)
    assert set(row) == {*IMAGE_KEYS, "product_id"}
    assert row["product_id"] == 7
    assert row["id"] == EXAMPLE.id
    assert row["tags"] == ["price-tag", "front"]


@given(images())
def test_image_to_element_and_back_is_identity(image: Image) -> None:
    assert element_to_image(image_to_element(image)) == image


@given(images())
def test_element_to_image_and_back_is_identity(image: Image) -> None:
    element = json.loads(json.dumps(image_to_element(image)))
    assert image_to_element(element_to_image(element)) == element


@given(images())
def test_image_to_row_and_back_is_identity(image: Image) -> None:
    assert row_to_image(image_to_row(image, product_id=1)) == image


@given(images())
def test_row_accepts_tags_as_tuple_and_id_as_text(image: Image) -> None:
    row = {**image_to_row(image, product_id=1), "tags": image.tags, "id": str(image.id)}
    assert row_to_image(row) == image


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_missing_key_is_named(key: str) -> None:
    element = image_to_element(EXAMPLE)
    del element[key]
    with pytest.raises(InvalidImageField) as raised:
        element_to_image(element)
    assert raised.value.field == key
    assert "missing" in raised.value.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", "not-a-uuid"),
        ("id", 5),
        ("url", None),
        ("order", "1"),
        ("order", True),
        ("is_label", "true"),
        ("alt_text", 3),
        ("tags", "price-tag"),
        ("tags", ["ok", 1]),
        ("file_size", 1.5),
        ("width", False),
        ("created_at", "yesterday"),
        ("updated_at", "2026-01-15T09:16:52"),
    ],
)
def test_wrong_type_is_named(key: str, value: object) -> None:
    element = {**image_to_element(EXAMPLE), key: value}
    with pytest.raises(InvalidImageField) as raised:
        element_to_image(element)
    assert raised.value.field == key


def test_row_rejects_naive_datetimes() -> None:
    row = {**image_to_row(EXAMPLE, 1), "created_at": datetime(2026, 1, 1)}
    with pytest.raises(InvalidImageField) as raised:
        row_to_image(row)
    assert raised.value.field == "created_at"
