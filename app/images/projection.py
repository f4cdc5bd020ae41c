"""One image, two lossless representations: a JSONB array element and a table row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

from app.images.errors import InvalidImageField
from app.images.record import Image

_T = TypeVar("_T")


def format_timestamp(moment: datetime) -> str:
    """Render a timestamp as the canonical UTC ISO 8601 string with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def image_to_element(image: Image) -> dict[str, object]:
    """Return the JSONB array element for an image, with all twelve keys."""
    return {
        "id": str(image.id),
        "url": image.url,
        "order": image.order,
        "is_label": image.is_label,
        "alt_text": image.alt_text,
        "tags": list(image.tags),
        "mime_type": image.mime_type,
        "file_size": image.file_size,
        "width": image.width,
        "height": image.height,
        "created_at": format_timestamp(image.created_at),
        "updated_at": format_timestamp(image.updated_at),
    }


def image_to_row(image: Image, product_id: int) -> dict[str, object]:
    """Return the product_images column values for an image of the given product."""
    return {
        "id": image.id,
        "product_id": product_id,
        "url": image.url,
        "order": image.order,
        "is_label": image.is_label,
        "alt_text": image.alt_text,
        "tags": list(image.tags),
        "mime_type": image.mime_type,
        "file_size": image.file_size,
        "width": image.width,
        "height": image.height,
        "created_at": image.created_at,
        "updated_at": image.updated_at,
    }


def element_to_image(element: Mapping[str, object]) -> Image:
    """Read a full-format JSONB element back into an image, rejecting any bad key."""
    return Image(
        id=_required(element, "id", _parse_uuid_text),
        url=_required(element, "url", _as_str),
        order=_required(element, "order", _as_int),
        is_label=_required(element, "is_label", _as_bool),
        alt_text=_required(element, "alt_text", _optional(_as_str)),
        tags=_required(element, "tags", _as_tags),
        mime_type=_required(element, "mime_type", _optional(_as_str)),
        file_size=_required(element, "file_size", _optional(_as_int)),
        width=_required(element, "width", _optional(_as_int)),
        height=_required(element, "height", _optional(_as_int)),
        created_at=_required(element, "created_at", _parse_timestamp_text),
        updated_at=_required(element, "updated_at", _parse_timestamp_text),
    )


def row_to_image(row: Mapping[str, object]) -> Image:
    """Read a product_images row back into an image, rejecting any bad column."""
    return Image(
        id=_required(row, "id", _as_uuid),
        url=_required(row, "url", _as_str),
        order=_required(row, "order", _as_int),
        is_label=_required(row, "is_label", _as_bool),
        alt_text=_required(row, "alt_text", _optional(_as_str)),
        tags=_required(row, "tags", _as_tags),
        mime_type=_required(row, "mime_type", _optional(_as_str)),
        file_size=_required(row, "file_size", _optional(_as_int)),
        width=_required(row, "width", _optional(_as_int)),
        height=_required(row, "height", _optional(_as_int)),
        created_at=_required(row, "created_at", _as_aware_datetime),
        updated_at=_required(row, "updated_at", _as_aware_datetime),
    )


class _WrongType(ValueError):
    """Internal signal that a value has the wrong type; turned into InvalidImageField."""


def _required(source: Mapping[str, object], key: str, read: Callable[[object], _T]) -> _T:
    if key not in source:
        raise InvalidImageField(key, "is missing; every image must carry all twelve keys")
    try:
        return read(source[key])
    except _WrongType as wrong:
        raise InvalidImageField(key, str(wrong)) from None


def _optional(read: Callable[[object], _T]) -> Callable[[object], _T | None]:
    def read_optional(value: object) -> _T | None:
        return None if value is None else read(value)

    return read_optional


def _as_str(value: object) -> str:
    if not isinstance(value, str):
        raise _WrongType(f"must be a string, got {type(value).__name__}")
    return value


def _as_int(value: object) -> int:
    # bool is a subclass of int in Python but never a valid number here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _WrongType(f"must be an integer, got {type(value).__name__}")
    return value


def _as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _WrongType(f"must be true or false, got {type(value).__name__}")
    return value


def _as_tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(tag, str) for tag in value):
        raise _WrongType("must be a list of strings")
    return tuple(value)


def _parse_uuid_text(value: object) -> UUID:
    try:
        return UUID(_as_str(value))
    except ValueError as bad:
        raise _WrongType(f"must be a UUID string ({bad})") from None


def _as_uuid(value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    return _parse_uuid_text(value)


def _parse_timestamp_text(value: object) -> datetime:
    try:
        moment = datetime.fromisoformat(_as_str(value))
    except ValueError as bad:
        raise _WrongType(f"must be an ISO 8601 timestamp with offset ({bad})") from None
    return _as_aware_datetime(moment)


def _as_aware_datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise _WrongType(f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _WrongType("must be timezone-aware")
    return value
