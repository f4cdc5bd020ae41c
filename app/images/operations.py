"""Pure list operations on a product's ordered images; every result is renumbered 0..n-1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from enum import Enum
from typing import Final, Literal
from urllib.parse import unquote, urlsplit
from uuid import UUID

from app.images.errors import ImageNotFound, InvalidImageField, NotAPermutation, TooManyImages
from app.images.record import Image
from app.images.validation import MAX_ALT_TEXT, validate_alt_text, validate_tags


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
    """Return the images that may be shown as the product's photos, in order: not the label,
    and not another image of the label's file (a legacy product can list one URL several
    times, and the label rule labels only the last)."""
    current = in_order(images)
    labels = label_objects(current)
    return tuple(
        image for image in current if not image.is_label and stored_object(image.url) not in labels
    )


# What URL parsers (WHATWG, which browsers and fetchers follow) strip from both ends of a URL:
# C0 control characters and space; tab, CR and LF they remove anywhere in it.
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_DEFAULT_PORTS = {"http": 80, "https": 443}


def stored_object(url: str) -> str:
    """The stored object a URL fetches, as comparable text: URLs with equal texts fetch the
    same object, so a photo whose URL has the label's text publishes the label's file.

    The storage maps `<base>/<key>` to a key (app/storage/base.py), and the key is the
    object. What a fetcher sends for a URL decides the key it gets, so these spellings are
    one object: surrounding whitespace; scheme and host in any case (RFC 3986 6.2.2.1), a
    trailing dot on the host, the default port written out, credentials; http or https (the
    storage serves the same object on both); percent-encoded path characters (S3, R2 and
    the local /media decode them); any query (a cache-buster, a resize or a version of the
    same key) and any fragment (never sent). The path itself stays case-sensitive, like
    keys. Where a spelling is ambiguous, it counts as the same object: treating a photo as
    the label's file only leaves that photo out, with its reason, while the other way round
    would publish the label.
    """
    text = url.strip(_C0_OR_SPACE).replace("\t", "").replace("\r", "").replace("\n", "")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # an unclosed "[" or a port out of range: no fetcher sends it as is
        return text
    scheme = parts.scheme.lower()
    path = unquote(parts.path) or "/"
    if scheme not in _DEFAULT_PORTS:
        return f"{scheme}:{parts.netloc.lower()}{path}"
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"  # IPv6, so that the port stays apart
    origin = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"http(s)://{origin}{path}"


def label(images: Sequence[Image]) -> Image | None:
    """Return the label image, or None when the product has none."""
    return next((image for image in in_order(images) if image.is_label), None)


def label_objects(images: Iterable[Image]) -> frozenset[str]:
    """The stored objects of the product's label(s) (see `stored_object`): no photo may be
    published from one of them."""
    return frozenset(stored_object(image.url) for image in images if image.is_label)


def _find(images: Sequence[Image], image_id: UUID) -> Image:
    for image in images:
        if image.id == image_id:
            return image
    raise ImageNotFound(image_id)


def _with_label(image: Image, is_label: bool, now: datetime) -> Image:
    if image.is_label == is_label:
        return image
    return replace(image, is_label=is_label, updated_at=now)


LABEL_ALT_TEXT: Final = "price label, not published"


def default_alt_text(images: Sequence[Image], image_id: UUID, title: str) -> str:
    """The alt text of an image nobody described: "<title>, photo 2 of 5" (its place among
    the `photos`), or LABEL_ALT_TEXT for the label and any other image of its file."""
    current = in_order(images)
    target = _find(current, image_id)
    shown = photos(current)
    if target not in shown:  # the label, or another image of the label's file
        return LABEL_ALT_TEXT
    position = next(i for i, image in enumerate(shown, start=1) if image.id == image_id)
    place = f"photo {position} of {len(shown)}"
    name = " ".join(title.split())
    if not name:
        return place.capitalize()
    room = MAX_ALT_TEXT - len(place) - len(", ")
    if len(name) > room:
        name = name[: room - 1].rstrip() + "…"
    return f"{name}, {place}"


def set_metadata(
    images: Sequence[Image],
    image_id: UUID,
    *,
    mime_type: str | None,
    file_size: int | None,
    width: int | None,
    height: int | None,
    alt_text: str | None,
    now: datetime,
) -> tuple[Image, ...]:
    """Record what the stored object says about one image (None keeps a field as it is);
    `alt_text` is given only to an image that has none: a person's words are never replaced."""
    current = in_order(images)
    target = _find(current, image_id)
    if mime_type is not None and not 0 < len(mime_type) <= 100:
        raise InvalidImageField("mime_type", "must be 1 to 100 characters long")
    if file_size is not None and file_size < 0:
        raise InvalidImageField("file_size", f"must not be negative, got {file_size}")
    for field, value in (("width", width), ("height", height)):
        if value is not None and value < 1:
            raise InvalidImageField(field, f"must be positive, got {value}")
    changed = replace(
        target,
        mime_type=target.mime_type if mime_type is None else mime_type,
        file_size=target.file_size if file_size is None else file_size,
        width=target.width if width is None else width,
        height=target.height if height is None else height,
        alt_text=target.alt_text if target.alt_text is not None else validate_alt_text(alt_text),
    )
    if changed != target:
        changed = replace(changed, updated_at=now)
    return renumber(changed if image.id == image_id else image for image in current)
