"""Pure list operations on a product's ordered images; every result is renumbered 0..n-1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Final, Literal
from uuid import UUID

from app.images.errors import ImageNotFound, InvalidImageField, NotAPermutation, TooManyImages
from app.images.record import Image
from app.images.validation import validate_alt_text, validate_tags


class _Unset(Enum):
    UNSET = "UNSET"


UNSET: Final = _Unset.UNSET
"""Marks an `update` argument that was not given, so that None can still mean "clear"."""
Unset = Literal[_Unset.UNSET]


def in_order(images: Iterable[Image]) -> tuple[Image, ...]:
    """Return the images sorted by their `order` (stable for equal orders)."""
    return tuple(sorted(images, key=lambda image: image.order))


def renumber(images: Iterable[Image]) -> tuple[Image, ...]:
    """Give the images orders 0..n-1 in the sequence they are given."""
    return tuple(
        image if image.order == order else replace(image, order=order)
        for order, image in enumerate(images)
    )


def add(
    images: Sequence[Image], new: Image, *, position: int | None = None, max_images: int
) -> tuple[Image, ...]:
    """Insert a new image at the end or at `position`; a new label replaces the old one."""
    current = in_order(images)
    if len(current) + 1 > max_images:
        raise TooManyImages(max_images)
    if position is not None and not 0 <= position <= len(current):
        raise InvalidImageField("position", f"must be between 0 and {len(current)}, got {position}")
    if any(image.id == new.id for image in current):
        raise InvalidImageField("id", f"image {new.id} is already on this product")
    validate_alt_text(new.alt_text)
    validate_tags(new.tags)
    if new.is_label:
        # The new image's own timestamp is the moment the other label was cleared.
        current = tuple(_with_label(image, False, new.updated_at) for image in current)
    at = len(current) if position is None else position
    return renumber((*current[:at], new, *current[at:]))


def delete(images: Sequence[Image], image_id: UUID) -> tuple[Image, ...]:
    """Remove one image and renumber the rest, keeping their relative order."""
    current = in_order(images)
    _find(current, image_id)
    return renumber(image for image in current if image.id != image_id)


def reorder(images: Sequence[Image], image_ids: Sequence[UUID]) -> tuple[Image, ...]:
    """Put the images in the given order, which must list every current id exactly once."""
    by_id = {image.id: image for image in images}
    counts = Counter(image_ids)
    missing = [image_id for image_id in by_id if image_id not in counts]
    unknown = [image_id for image_id in counts if image_id not in by_id]
    duplicated = [image_id for image_id, count in counts.items() if count > 1]
    if missing or unknown or duplicated:
        raise NotAPermutation(missing=missing, unknown=unknown, duplicated=duplicated)
    return renumber(by_id[image_id] for image_id in image_ids)


def set_label(
    images: Sequence[Image], image_id: UUID, is_label: bool, *, now: datetime
) -> tuple[Image, ...]:
    """Mark or unmark one image as the label; marking one unmarks any other."""
    current = in_order(images)
    _find(current, image_id)

    def relabel(image: Image) -> Image:
        if image.id == image_id:
            return _with_label(image, is_label, now)
        if is_label:
            return _with_label(image, False, now)
        return image

    return renumber(relabel(image) for image in current)


def update(
    images: Sequence[Image],
    image_id: UUID,
    *,
    now: datetime,
    alt_text: str | Unset | None = UNSET,
    tags: Sequence[str] | Unset = UNSET,
) -> tuple[Image, ...]:
    """Change the alt text and/or tags of one image; only the given fields change."""
    current = in_order(images)
    target = _find(current, image_id)
    changed = target
    if alt_text is not UNSET:
        changed = replace(changed, alt_text=validate_alt_text(alt_text))
    if tags is not UNSET:
        changed = replace(changed, tags=validate_tags(tags))
    if changed != target:
        changed = replace(changed, updated_at=now)
    return renumber(changed if image.id == image_id else image for image in current)


def photos(images: Sequence[Image]) -> tuple[Image, ...]:
    """Return the images that are not the label, in order."""
    return tuple(image for image in in_order(images) if not image.is_label)


def label(images: Sequence[Image]) -> Image | None:
    """Return the label image, or None when the product has none."""
    return next((image for image in in_order(images) if image.is_label), None)


def _find(images: Sequence[Image], image_id: UUID) -> Image:
    for image in images:
        if image.id == image_id:
            return image
    raise ImageNotFound(image_id)


def _with_label(image: Image, is_label: bool, now: datetime) -> Image:
    if image.is_label == is_label:
        return image
    return replace(image, is_label=is_label, updated_at=now)
