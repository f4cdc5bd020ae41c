"""Normalising a legacy images column: every element becomes an image or a rejection."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from app.images.identity import legacy_image_id
from app.images.normalise import REJECTION_REASONS, Normalised, normalise_legacy
from app.images.projection import image_to_element
from tests.images.strategies import (
    dirty_legacy_arrays,
    dirty_legacy_columns,
    mixed_format_arrays,
    moments,
    product_ids,
)

PRODUCT_ID = 42
PRODUCT_CREATED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

columns = st.one_of(dirty_legacy_columns, mixed_format_arrays())


def normalise(raw: object, *, legacy: bool = True) -> Normalised:
    return normalise_legacy(
        raw,
        product_id=PRODUCT_ID,
        product_created_at=PRODUCT_CREATED_AT,
        is_legacy_source=legacy,
    )


def urls(result: Normalised) -> list[str]:
    return [image.url for image in result.images]


# Properties


@given(columns, product_ids, moments, st.booleans())
def test_every_element_is_an_image_or_a_rejection(
    raw: object, product_id: int, created_at: datetime, legacy: bool
) -> None:
    result = normalise_legacy(
        raw, product_id=product_id, product_created_at=created_at, is_legacy_source=legacy
    )
    assert all(rejection.reason in REJECTION_REASONS for rejection in result.rejected)
    if isinstance(raw, list):
        positions = [rejection.position for rejection in result.rejected]
        assert len(result.images) + len(positions) == len(raw)
        assert len(set(positions)) == len(positions)
        for rejection in result.rejected:
            assert rejection.position is not None
            assert rejection.raw is raw[rejection.position]
    else:
        assert result.images == ()
        assert [rejection.position for rejection in result.rejected] == [None]


@given(columns, product_ids, moments, st.booleans())
def test_orders_are_zero_to_n_ids_unique_and_at_most_one_label(
    raw: object, product_id: int, created_at: datetime, legacy: bool
) -> None:
    result = normalise_legacy(
        raw, product_id=product_id, product_created_at=created_at, is_legacy_source=legacy
    )
    assert [image.order for image in result.images] == list(range(len(result.images)))
    assert len({image.id for image in result.images}) == len(result.images)
    assert sum(image.is_label for image in result.images) <= 1


@given(columns, product_ids, moments, st.booleans())
def test_timestamps_are_aware_utc(
    raw: object, product_id: int, created_at: datetime, legacy: bool
) -> None:
    result = normalise_legacy(
        raw, product_id=product_id, product_created_at=created_at, is_legacy_source=legacy
    )
    for image in result.images:
        assert image.created_at.tzinfo is UTC
        assert image.updated_at.tzinfo is UTC


@given(columns, product_ids, moments, st.booleans())
def test_normalising_twice_changes_nothing(
    raw: object, product_id: int, created_at: datetime, legacy: bool
) -> None:
    first = normalise_legacy(
        raw, product_id=product_id, product_created_at=created_at, is_legacy_source=legacy
    )
    again = normalise_legacy(
        [image_to_element(image) for image in first.images],
        product_id=product_id,
        product_created_at=created_at,
        is_legacy_source=legacy,
    )
    assert again.images == first.images
    assert again.rejected == ()


@given(columns, product_ids, moments, st.booleans())
def test_same_input_gives_same_ids(
    raw: object, product_id: int, created_at: datetime, legacy: bool
) -> None:
    def ids() -> list[UUID]:
        result = normalise_legacy(
            raw, product_id=product_id, product_created_at=created_at, is_legacy_source=legacy
        )
        return [image.id for image in result.images]

    assert ids() == ids()


@given(columns, st.data())
def test_ids_survive_any_history_of_dual_writes(raw: object, data: st.DataObject) -> None:
    """Whatever the dual-write does next (add an image with an existing url anywhere, move,
    delete), reading its JSONB back gives every image the id it had: ids come from the
    elements, never from their neighbours."""
    images = list(normalise(raw).images)
    pool = [image.url for image in images] or ["a.jpg"]
    for _ in range(data.draw(st.integers(0, 6), label="steps")):
        step = data.draw(st.sampled_from(["add", "move", "delete"]), label="step")
        if step == "add" or not images:
            at = data.draw(st.integers(0, len(images)), label="position")
            url = data.draw(st.sampled_from(pool), label="url")
            new = replace(images[0] if images else normalise([{"url": url}]).images[0])
            new = replace(new, id=data.draw(st.uuids(), label="id"), url=url)
            if all(image.id != new.id for image in images):
                images.insert(at, new)
        elif step == "move":
            images.insert(
                data.draw(st.integers(0, len(images) - 1)),
                images.pop(data.draw(st.integers(0, len(images) - 1))),
            )
        else:
            images.pop(data.draw(st.integers(0, len(images) - 1)))
        images = [replace(image, order=order) for order, image in enumerate(images)]
        written = [image_to_element(image) for image in images]
        assert [image.id for image in normalise(written).images] == [i.id for i in images]


@given(dirty_legacy_arrays)
def test_urls_are_kept_exactly_and_duplicates_stay_distinct(raw: list[object]) -> None:
    result = normalise(raw)
    kept = [e["url"] for e in raw if isinstance(e, dict) and isinstance(e.get("url"), str)]
    assert Counter(urls(result)) == Counter(url for url in kept if url.strip())


@given(dirty_legacy_arrays)
def test_legacy_arrays_follow_the_label_rule(raw: list[object]) -> None:
    result = normalise(raw, legacy=True)
    labels = [image.is_label for image in result.images]
    if len(labels) >= 2:
        assert labels == [False] * (len(labels) - 1) + [True]
    else:
        assert not any(labels)
    assert result.needs_label_review == (len(labels) == 1)


@given(dirty_legacy_arrays)
def test_non_legacy_arrays_get_no_label(raw: list[object]) -> None:
    result = normalise(raw, legacy=False)
    assert not any(image.is_label for image in result.images)
    assert not result.needs_label_review


# Examples of the tricky cases


def test_column_null_and_not_an_array() -> None:
    (null,) = normalise(None).rejected
    assert (null.position, null.reason) == (None, "column_null")
    for raw in ({"url": "a.jpg"}, "a.jpg", 3):
        (rejection,) = normalise(raw).rejected
        assert (rejection.position, rejection.raw, rejection.reason) == (
            None,
            raw,
            "column_not_an_array",
        )


def test_each_bad_element_has_its_reason() -> None:
    raw: list[object] = ["a.jpg", {}, {"url": None}, {"url": 7}, {"url": "  "}, {"url": "ok.jpg"}]
    result = normalise(raw)
    assert urls(result) == ["ok.jpg"]
    assert [(r.position, r.reason) for r in result.rejected] == [
        (0, "not_an_object"),
        (1, "missing_url"),
        (2, "missing_url"),
        (3, "url_not_a_string"),
        (4, "empty_url"),
    ]
    assert all(r.detail for r in result.rejected)


def test_string_order_counts_as_a_number() -> None:
    raw = [{"url": "c.jpg", "order": " 3 "}, {"url": "a.jpg", "order": 1}, {"url": "b.jpg"}]
    assert urls(normalise(raw)) == ["a.jpg", "c.jpg", "b.jpg"]


def test_numeric_strings_compare_as_numbers_not_text() -> None:
    raw = [{"url": "ten.jpg", "order": "10"}, {"url": "nine.jpg", "order": "9.5"}]
    assert urls(normalise(raw)) == ["nine.jpg", "ten.jpg"]


def test_bool_order_counts_as_no_order() -> None:
    raw = [
        {"url": "t.jpg", "order": True},
        {"url": "f.jpg", "order": False},
        {"url": "n.jpg", "order": 5},
    ]
    assert urls(normalise(raw)) == ["n.jpg", "t.jpg", "f.jpg"]


def test_gaps_and_duplicate_orders_keep_array_position_as_tie_break() -> None:
    raw = [
        {"url": "b.jpg", "order": 7},
        {"url": "a.jpg", "order": -2},
        {"url": "c.jpg", "order": 7.0},
        {"url": "z.jpg", "order": "x"},
    ]
    result = normalise(raw)
    assert urls(result) == ["a.jpg", "b.jpg", "c.jpg", "z.jpg"]
    assert [image.order for image in result.images] == [0, 1, 2, 3]


def test_missing_or_invalid_created_at_falls_back_to_the_products() -> None:
    raw = [{"url": "a.jpg"}, {"url": "b.jpg", "created_at": "last tuesday"}]
    for image in normalise(raw).images:
        assert image.created_at == PRODUCT_CREATED_AT
        assert image.updated_at == PRODUCT_CREATED_AT


def test_created_at_spellings() -> None:
    expected = datetime(2026, 1, 15, 9, 16, 52, 500000, tzinfo=UTC)
    for text in (
        "2026-01-15T09:16:52.5Z",
        "2026-01-15 09:16:52.500000",
        "2026-01-15T10:16:52.5+01:00",
        "2026-01-15T10:16:52.5+0100",
        "2026-01-15T04:16:52.5-05",
    ):
        (image,) = normalise([{"url": "a.jpg", "created_at": text}]).images
        assert image.created_at == expected, text
        assert image.updated_at == expected, text


def test_updated_at_is_read_like_created_at() -> None:
    raw = [
        {"url": "a.jpg", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-02-01 00:00:00"}
    ]
    (image,) = normalise(raw).images
    assert image.updated_at == datetime(2026, 2, 1, tzinfo=UTC)


def test_duplicate_url_gets_occurrence_zero_and_one_ids() -> None:
    raw = [{"url": "a.jpg", "order": 2}, {"url": "a.jpg", "order": 1}]
    first, second = normalise(raw).images
    assert first.id == legacy_image_id(PRODUCT_ID, "a.jpg", 0)
    assert second.id == legacy_image_id(PRODUCT_ID, "a.jpg", 1)


def test_a_carried_uuid_is_kept_unless_already_taken() -> None:
    carried = "6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f"
    raw = [{"url": "a.jpg", "id": carried}, {"url": "b.jpg", "id": carried.upper()}]
    first, second = normalise(raw).images
    assert first.id == UUID(carried)
    assert second.id == legacy_image_id(PRODUCT_ID, "b.jpg", 0)


def test_a_carried_id_must_be_a_canonical_uuid_string() -> None:
    raw = [
        {"url": "a.jpg", "id": "{6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f}"},
        {"url": "b.jpg", "id": 5},
    ]
    first, second = normalise(raw).images
    assert first.id == legacy_image_id(PRODUCT_ID, "a.jpg", 0)
    assert second.id == legacy_image_id(PRODUCT_ID, "b.jpg", 0)


def test_a_carried_id_is_kept_even_when_another_image_derives_it() -> None:
    # The first element carries the id the third one derives (a.jpg, occurrence 1): the
    # carried id is the image's identity (the dual-write wrote it), the third image takes
    # the next attempt of its own derived id.
    stolen = legacy_image_id(PRODUCT_ID, "a.jpg", 1)
    raw = [{"url": "a.jpg", "id": str(stolen)}, {"url": "b.jpg"}, {"url": "a.jpg"}]
    images = normalise(raw).images
    assert [image.id for image in images] == [
        stolen,
        legacy_image_id(PRODUCT_ID, "b.jpg", 0),
        legacy_image_id(PRODUCT_ID, "a.jpg", 1, attempt=1),
    ]


def test_an_image_added_before_one_with_the_same_url_changes_no_id() -> None:
    # What the dual-write leaves after adding image 0's url at position 0 of a legacy array.
    old = legacy_image_id(PRODUCT_ID, "a.jpg", 0)
    new = UUID("6f1d2c3b-4a59-4e8f-9d0c-1b2a3c4d5e6f")
    raw = [{"url": "a.jpg", "id": str(new)}, {"url": "a.jpg", "id": str(old)}]
    assert [image.id for image in normalise(raw).images] == [new, old]


def test_explicit_is_label_switches_off_the_rule_and_keeps_the_last_label() -> None:
    raw = [
        {"url": "a.jpg", "is_label": True},
        {"url": "b.jpg", "is_label": True},
        {"url": "c.jpg", "is_label": "true"},
    ]
    result = normalise(raw, legacy=True)
    assert [image.is_label for image in result.images] == [False, True, False]
    assert not result.needs_label_review


def test_explicit_false_labels_mean_no_label_even_for_legacy() -> None:
    raw = [{"url": "a.jpg", "is_label": False}, {"url": "b.jpg"}]
    assert not any(image.is_label for image in normalise(raw, legacy=True).images)


def test_metadata_is_carried_only_when_well_typed() -> None:
    raw = [
        {
            "url": "a.jpg",
            "alt_text": "front",
            "tags": ["front", 3, "sale"],
            "mime_type": "image/png",
            "file_size": 0,
            "width": 640,
            "height": 480,
        },
        {
            "url": "b.jpg",
            "alt_text": 5,
            "tags": "front",
            "mime_type": None,
            "file_size": -1,
            "width": 0,
            "height": True,
        },
    ]
    good, bad = normalise(raw, legacy=False).images
    assert (good.alt_text, good.tags, good.mime_type) == ("front", ("front", "sale"), "image/png")
    assert (good.file_size, good.width, good.height) == (0, 640, 480)
    assert (bad.alt_text, bad.tags, bad.mime_type) == (None, (), None)
    assert (bad.file_size, bad.width, bad.height) == (None, None, None)
