"""The label rule: legacy importer put the price tag last; others are left alone."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from app.images.label_rule import is_legacy_source, label_rule
from app.images.record import Image
from tests.images.strategies import image_lists


def unlabelled(images: tuple[Image, ...]) -> tuple[Image, ...]:
    return tuple(replace(image, is_label=False) for image in images)


@given(image_lists(min_size=2))
def test_legacy_with_two_or_more_images_labels_exactly_the_last(images: tuple[Image, ...]) -> None:
    decision = label_rule(unlabelled(images), is_legacy_source=True)
    assert not decision.needs_review
    assert [image.is_label for image in decision.images] == [False] * (len(images) - 1) + [True]
    assert decision.images[-1].id == max(images, key=lambda image: image.order).id


@given(image_lists(min_size=2))
def test_last_is_by_order_not_by_position(images: tuple[Image, ...]) -> None:
    decision = label_rule(tuple(reversed(unlabelled(images))), is_legacy_source=True)
    labels = [image for image in decision.images if image.is_label]
    assert [image.order for image in labels] == [len(images) - 1]


@given(image_lists(min_size=1, max_size=1))
def test_legacy_with_one_image_is_not_labelled_but_needs_review(images: tuple[Image, ...]) -> None:
    decision = label_rule(unlabelled(images), is_legacy_source=True)
    assert decision.needs_review
    assert decision.images == unlabelled(images)


def test_legacy_without_images_needs_nothing() -> None:
    decision = label_rule((), is_legacy_source=True)
    assert decision.images == ()
    assert not decision.needs_review


@given(image_lists())
def test_non_legacy_is_untouched(images: tuple[Image, ...]) -> None:
    decision = label_rule(images, is_legacy_source=False)
    assert decision.images == images
    assert not decision.needs_review


@given(st.none() | st.text(), st.frozensets(st.text()))
def test_legacy_sources_come_from_configuration(
    source: str | None, legacy_sources: frozenset[str]
) -> None:
    assert is_legacy_source(source, legacy_sources) == (source in legacy_sources)


def test_the_old_importer_counts_as_legacy_only_when_configured() -> None:
    assert is_legacy_source("pythonApiWOO", {"pythonApiWOO"})
    assert not is_legacy_source("pythonApiWOO", set())
    assert not is_legacy_source(None, {"pythonApiWOO"})
