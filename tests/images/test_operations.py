"""List operations keep orders 0..n-1, ids unique and at most one label."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.images.errors import (
    ImageError,
    ImageNotFound,
    InvalidImageField,
    NotAPermutation,
    TooManyImages,
)
from app.images.operations import (
    UNSET,
    add,
    delete,
    label,
    photos,
    reorder,
    set_label,
    stored_object,
    update,
)
from app.images.record import Image
from tests.images.strategies import image_lists, images, moments

MAX_IMAGES = 12
LATER = datetime(2101, 1, 1, tzinfo=UTC)


def assert_well_formed(result: tuple[Image, ...]) -> None:
    assert [image.order for image in result] == list(range(len(result)))
    assert len({image.id for image in result}) == len(result)
    assert sum(image.is_label for image in result) <= 1


def ids(images: tuple[Image, ...]) -> list[UUID]:
    return [image.id for image in images]


def pick(data: st.DataObject, images: tuple[Image, ...]) -> Image:
    return images[data.draw(st.integers(min_value=0, max_value=len(images) - 1))]


@given(image_lists(max_size=MAX_IMAGES - 1), images(), st.data())
def test_add_at_position_puts_it_there(
    current: tuple[Image, ...], new: Image, data: st.DataObject
) -> None:
    assume(new.id not in ids(current))
    position = data.draw(st.integers(min_value=0, max_value=len(current)))
    result = add(current, new, position=position, max_images=MAX_IMAGES)
    assert_well_formed(result)
    assert result[position].id == new.id
    assert ids(result) == [*ids(current)[:position], new.id, *ids(current)[position:]]


@given(image_lists(max_size=MAX_IMAGES - 1), images())
def test_add_without_position_appends(current: tuple[Image, ...], new: Image) -> None:
    assume(new.id not in ids(current))
    result = add(current, new, max_images=MAX_IMAGES)
    assert_well_formed(result)
    assert result[-1].id == new.id


@given(image_lists(max_size=MAX_IMAGES - 1), images())
def test_adding_a_label_clears_the_old_one(current: tuple[Image, ...], new: Image) -> None:
    assume(new.id not in ids(current))
    result = add(current, replace(new, is_label=True), max_images=MAX_IMAGES)
    assert_well_formed(result)
    assert label(result) == result[-1]


@given(image_lists(min_size=MAX_IMAGES, max_size=MAX_IMAGES), images())
def test_add_beyond_the_limit_raises(current: tuple[Image, ...], new: Image) -> None:
    with pytest.raises(TooManyImages):
        add(current, new, max_images=MAX_IMAGES)


@given(image_lists(max_size=4), images(), st.sampled_from([-1, 5, 99]))
def test_add_at_out_of_range_position_raises(
    current: tuple[Image, ...], new: Image, position: int
) -> None:
    with pytest.raises(InvalidImageField) as raised:
        add(current, new, position=position, max_images=MAX_IMAGES)
    assert raised.value.field == "position"


@given(image_lists(min_size=1, max_size=MAX_IMAGES - 1), st.data())
def test_add_with_an_existing_id_raises(current: tuple[Image, ...], data: st.DataObject) -> None:
    with pytest.raises(InvalidImageField):
        add(current, pick(data, current), max_images=MAX_IMAGES)


@given(image_lists(min_size=1), st.data())
def test_delete_renumbers_keeping_relative_order(
    current: tuple[Image, ...], data: st.DataObject
) -> None:
    gone = pick(data, current)
    result = delete(current, gone.id)
    assert_well_formed(result)
    assert ids(result) == [image_id for image_id in ids(current) if image_id != gone.id]


@given(image_lists(), st.uuids())
def test_delete_unknown_raises(current: tuple[Image, ...], unknown: UUID) -> None:
    assume(unknown not in ids(current))
    with pytest.raises(ImageNotFound):
        delete(current, unknown)


@given(image_lists(), st.data())
def test_reorder_by_any_permutation_follows_it(
    current: tuple[Image, ...], data: st.DataObject
) -> None:
    wanted = data.draw(st.permutations(ids(current)))
    result = reorder(current, wanted)
    assert_well_formed(result)
    assert ids(result) == wanted


@given(image_lists(), st.lists(st.uuids()), st.data())
def test_reorder_by_a_non_permutation_raises(
    current: tuple[Image, ...], strangers: list[UUID], data: st.DataObject
) -> None:
    pool = ids(current) + strangers
    wanted = data.draw(
        st.lists(st.sampled_from(pool), max_size=len(pool) + 2) if pool else st.just([])
    )
    assume(sorted(wanted) != sorted(ids(current)))
    with pytest.raises(NotAPermutation) as raised:
        reorder(current, wanted)
    error = raised.value
    assert error.missing == set(ids(current)) - set(wanted)
    assert error.unknown == set(wanted) - set(ids(current))
    assert error.duplicated == {image_id for image_id in wanted if wanted.count(image_id) > 1}


@given(image_lists(min_size=1), st.data(), st.booleans())
def test_set_label_keeps_at_most_one_and_bumps_only_changed(
    current: tuple[Image, ...], data: st.DataObject, is_label: bool
) -> None:
    target = pick(data, current)
    result = set_label(current, target.id, is_label, now=LATER)
    assert_well_formed(result)
    assert next(image for image in result if image.id == target.id).is_label is is_label
    for before, after in zip(current, result, strict=True):
        changed = before.is_label != after.is_label
        assert after.updated_at == (LATER if changed else before.updated_at)
        assert replace(after, is_label=before.is_label, updated_at=before.updated_at) == before


def test_unsetting_the_only_label_leaves_none() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    image = Image(UUID(int=1), "a.jpg", 0, True, None, (), None, None, None, None, now, now)
    assert label(set_label((image,), image.id, False, now=LATER)) is None


@given(image_lists(min_size=1), st.data())
def test_update_changes_only_what_is_given(current: tuple[Image, ...], data: st.DataObject) -> None:
    target = pick(data, current)
    result = update(current, target.id, now=LATER, alt_text=None)
    updated = next(image for image in result if image.id == target.id)
    assert updated.alt_text is None
    assert updated.tags == target.tags
    assert updated.updated_at == (target.updated_at if target.alt_text is None else LATER)
    assert_well_formed(result)


def test_update_sets_and_validates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    image = Image(UUID(int=1), "a.jpg", 0, False, "old", (), None, None, None, None, now, now)
    (tagged,) = update((image,), image.id, now=LATER, tags=["price-tag"])
    assert (tagged.alt_text, tagged.tags, tagged.updated_at) == ("old", ("price-tag",), LATER)
    assert update((image,), image.id, now=LATER) == (image,)
    assert update((image,), image.id, now=LATER, alt_text=UNSET) == (image,)
    with pytest.raises(InvalidImageField) as raised:
        update((image,), image.id, now=LATER, tags=["Not Valid"])
    assert raised.value.field == "tags"
    with pytest.raises(ImageNotFound):
        update((image,), UUID(int=2), now=LATER, alt_text="x")


@given(image_lists())
def test_photos_and_label_split_the_images(current: tuple[Image, ...]) -> None:
    found = label(current)
    copies = [
        image
        for image in current
        if found and image != found and stored_object(image.url) == stored_object(found.url)
    ]
    assert [*photos(current), *copies, *([found] if found else [])] == sorted(
        current,
        key=lambda image: (image.is_label, image in copies, image.order),
    )


operation_names = st.sampled_from(["add", "delete", "reorder", "set_label", "update"])


@given(image_lists(max_size=MAX_IMAGES), st.lists(operation_names, max_size=8), st.data())
def test_any_sequence_of_operations_keeps_the_list_well_formed(
    current: tuple[Image, ...], operations: list[str], data: st.DataObject
) -> None:
    for operation in operations:
        try:
            current = apply(operation, current, data)
        except ImageError:
            continue
        assert_well_formed(current)


def apply(operation: str, current: tuple[Image, ...], data: st.DataObject) -> tuple[Image, ...]:
    now = data.draw(moments)
    if operation == "add":
        new = replace(data.draw(images()), is_label=data.draw(st.booleans()))
        position = data.draw(st.none() | st.integers(min_value=0, max_value=len(current)))
        return add(current, new, position=position, max_images=MAX_IMAGES)
    target = pick(data, current).id if current else data.draw(st.uuids())
    if operation == "delete":
        return delete(current, target)
    if operation == "reorder":
        return reorder(current, data.draw(st.permutations(ids(current))))
    if operation == "set_label":
        return set_label(current, target, data.draw(st.booleans()), now=now)
    return update(current, target, now=now, alt_text=data.draw(st.none() | st.text(max_size=9)))
