"""How a product's table rows can differ from its JSONB, classified."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from app.images import Image
from app.images.differences import (
    DUPLICATE,
    EXTRA,
    FIELD_DIFFERS,
    MISSING,
    REORDERED,
    classify,
    compare_representations,
)
from app.images.normalise import normalise_legacy
from tests.images.strategies import (
    dirty_legacy_columns,
    image_lists,
    mixed_format_arrays,
    moments,
    product_ids,
)


@given(image_lists())
def test_identical_lists_have_no_difference(images: tuple[Image, ...]) -> None:
    assert classify(1, images, images) == []


@given(image_lists(min_size=1))
def test_a_row_missing_from_the_table_is_missing(images: tuple[Image, ...]) -> None:
    differences = classify(1, images, images[:-1])
    assert [d.kind for d in differences] == [MISSING]
    assert differences[0].jsonb_ids == (str(images[-1].id),)


@given(image_lists(min_size=2))
def test_a_swapped_pair_is_reordered(images: tuple[Image, ...]) -> None:
    swapped = (images[1], images[0], *images[2:])
    assert [d.kind for d in classify(1, images, swapped)] == [REORDERED]


@given(image_lists(min_size=1))
def test_a_changed_field_is_named(images: tuple[Image, ...]) -> None:
    changed = (
        replace(images[0], alt_text="changed by hand", is_label=not images[0].is_label),
        *images[1:],
    )
    differences = classify(1, images, changed)
    assert [d.kind for d in differences] == [FIELD_DIFFERS]
    assert "alt_text" in differences[0].detail
    assert "is_label" in differences[0].detail


@given(image_lists(min_size=1))
def test_an_unknown_row_is_extra_and_a_second_copy_of_a_picture_is_a_duplicate(
    images: tuple[Image, ...],
) -> None:
    from uuid import uuid4

    stranger = replace(images[0], id=uuid4(), url="http://elsewhere/unknown.jpg")
    assert [d.kind for d in classify(1, images, (*images, stranger))] == [EXTRA]
    copy = replace(images[0], id=uuid4())
    assert [d.kind for d in classify(1, images, (*images, copy))] == [DUPLICATE]


@given(
    st.one_of(dirty_legacy_columns, mixed_format_arrays()),
    product_ids,
    st.booleans(),
    moments,
)
def test_the_rows_the_normalisation_writes_always_match_their_jsonb(
    raw: object, product_id: int, legacy: bool, created_at: datetime
) -> None:
    rows = normalise_legacy(
        raw, product_id=product_id, product_created_at=created_at, is_legacy_source=legacy
    ).images
    compare = partial(
        compare_representations, product_created_at=created_at, is_legacy_source=legacy
    )
    assert compare(product_id, raw, rows) == []
    if rows:
        assert [d.kind for d in compare(product_id, raw, rows[:-1])] == [MISSING]
    if len(rows) >= 2 and rows[0] != rows[1]:
        swapped = (replace(rows[1], order=0), replace(rows[0], order=1), *rows[2:])
        assert compare(product_id, raw, swapped) != []
