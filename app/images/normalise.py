"""Turn a legacy `products.images` JSONB value into images, plus what had to be rejected.

Every rule here is meant to be reproduced in PostgreSQL SQL, so each is deliberately plain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from app.images.identity import legacy_image_id
from app.images.label_rule import label_rule
from app.images.record import Image

# re.ASCII: \d and \s must mean [0-9] and ASCII whitespace, as they will in SQL.
# The patterns are used with fullmatch(), so the ^...$ anchors are implicit (and "$" cannot
# sneak a trailing newline through).
ORDER_TEXT_PATTERN = re.compile(r"\s*-?\d+(\.\d+)?\s*", re.ASCII)
TIMESTAMP_PATTERN = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:?\d{2})?)?", re.ASCII
)
UUID_TEXT_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII
)

MAX_HISTORY_TAG_LENGTH = 200
"""Characters kept of one legacy tag (at most 800 bytes in UTF-8, far under the GIN limit)."""
MAX_BIGINT = 2**63 - 1
FLOAT_INTEGRAL = 2**53  # from here on, every double is an integer
MAX_INT = 2**31 - 1

COLUMN_NULL = "column_null"
COLUMN_NOT_AN_ARRAY = "column_not_an_array"
NOT_AN_OBJECT = "not_an_object"
MISSING_URL = "missing_url"
URL_NOT_A_STRING = "url_not_a_string"
EMPTY_URL = "empty_url"
REJECTION_REASONS = frozenset(
    {COLUMN_NULL, COLUMN_NOT_AN_ARRAY, NOT_AN_OBJECT, MISSING_URL, URL_NOT_A_STRING, EMPTY_URL}
)


@dataclass(frozen=True)
class RejectedElement:
    """Part of a legacy column that could not become an image, and why."""

    position: int | None
    raw: object
    reason: str
    detail: str


@dataclass(frozen=True)
class Normalised:
    """The images read from a legacy column, the rejected parts, and whether labels need a human."""

    images: tuple[Image, ...]
    rejected: tuple[RejectedElement, ...]
    needs_label_review: bool


@dataclass(frozen=True)
class _Accepted:
    position: int
    element: Mapping[str, object]
    url: str


def normalise_legacy(
    raw: object, *, product_id: int, product_created_at: datetime, is_legacy_source: bool
) -> Normalised:
    """Normalise a decoded `products.images` value into ordered, identified, labelled images."""
    if not isinstance(raw, list):
        return Normalised(images=(), rejected=(_reject_column(raw),), needs_label_review=False)
    accepted: list[_Accepted] = []
    rejected: list[RejectedElement] = []
    for position, element in enumerate(raw):
        verdict = _screen(position, element)
        if isinstance(verdict, RejectedElement):
            rejected.append(verdict)
        else:
            accepted.append(verdict)
    accepted.sort(key=_sort_key)
    ids = _assign_ids(accepted, product_id)
    fallback_created_at = _as_utc(product_created_at)
    images = tuple(
        _to_image(item, order, ids[order], fallback_created_at)
        for order, item in enumerate(accepted)
    )
    if any(isinstance(item.element.get("is_label"), bool) for item in accepted):
        return Normalised(
            images=_keep_last_label(images), rejected=tuple(rejected), needs_label_review=False
        )
    decision = label_rule(images, is_legacy_source=is_legacy_source)
    return Normalised(
        images=decision.images, rejected=tuple(rejected), needs_label_review=decision.needs_review
    )


def _reject_column(raw: object) -> RejectedElement:
    if raw is None:
        return RejectedElement(None, None, COLUMN_NULL, "the images column is null")
    return RejectedElement(
        None,
        raw,
        COLUMN_NOT_AN_ARRAY,
        f"the images column holds a {_json_type(raw)}, not an array of image objects",
    )


def _screen(position: int, element: object) -> _Accepted | RejectedElement:
    if not isinstance(element, dict):
        return RejectedElement(
            position,
            element,
            NOT_AN_OBJECT,
            f"element {position} is a {_json_type(element)}, not an object with a url",
        )
    url = element.get("url")
    if url is None:
        return RejectedElement(position, element, MISSING_URL, f"element {position} has no url")
    if not isinstance(url, str):
        return RejectedElement(
            position,
            element,
            URL_NOT_A_STRING,
            f"element {position} has a url that is a {_json_type(url)}, not a string",
        )
    if not url.strip():
        return RejectedElement(position, element, EMPTY_URL, f"element {position} has a blank url")
    return _Accepted(position=position, element=element, url=url)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def usable_order(value: object) -> Decimal | None:
    """Return the sort value of a legacy `order`, or None when it is not a usable number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if abs(value) >= FLOAT_INTEGRAL:
            # Every double this large is an integer: its exact value. (repr's shortest text
            # may be the midpoint of two doubles, which PostgreSQL's shortest output, Ryu
            # without the bounds, never gives: 4.00000000000001e16 against ...096.)
            return Decimal(int(value))
        # repr() gives the shortest decimal text, i.e. the JSON text PostgreSQL compared.
        return Decimal(repr(value))
    if isinstance(value, str) and ORDER_TEXT_PATTERN.fullmatch(value):
        return Decimal(value.strip())
    return None


def _sort_key(item: _Accepted) -> tuple[bool, Decimal, int]:
    order = usable_order(item.element.get("order"))
    if order is None:
        return (True, Decimal(0), item.position)
    return (False, order, item.position)


def parse_legacy_timestamp(value: object) -> datetime | None:
    """Return a legacy timestamp string as an aware UTC datetime, or None if it is not one."""
    if not isinstance(value, str) or not TIMESTAMP_PATTERN.fullmatch(value):
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        return _as_utc(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return None


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _assign_ids(accepted: list[_Accepted], product_id: int) -> list[UUID]:
    """One id per accepted element, unique within the product and stable for every history.

    A carried id (the dual-write writes every element with its id) is the image's identity:
    the first element in normalised order carrying a value keeps it, whatever another element
    would derive, so an image added or moved next to one with the same URL never changes the
    others' ids. Any other element derives its id from (url, occurrence); in the rare case
    that id is already carried by another element, the next attempt's name is tried. SQL
    reproduces this with one window function and a plpgsql loop for the rare case
    (backfill/sql/project_products.sql, pim_free_image_id)."""
    carried = [_carried_id(item.element.get("id")) for item in accepted]
    keeper: dict[UUID, int] = {}
    for index, value in enumerate(carried):
        if value is not None:
            keeper.setdefault(value, index)
    occurrences: dict[str, int] = {}
    ids: list[UUID] = []
    for index, item in enumerate(accepted):
        occurrence = occurrences.get(item.url, 0)
        occurrences[item.url] = occurrence + 1
        value = carried[index]
        if value is not None and keeper[value] == index:
            ids.append(value)
            continue
        ids.append(free_image_id(product_id, item.url, occurrence, taken=keeper.keys()))
    return ids


def free_image_id(product_id: int, url: str, occurrence: int, *, taken: Collection[UUID]) -> UUID:
    """The first attempt of the image's derived id that no other image carries."""
    attempt = 0
    while (candidate := legacy_image_id(product_id, url, occurrence, attempt)) in taken:
        attempt += 1
    return candidate


def _carried_id(value: object) -> UUID | None:
    if isinstance(value, str) and UUID_TEXT_PATTERN.fullmatch(value):
        return UUID(value)
    return None


def _to_image(item: _Accepted, order: int, image_id: UUID, fallback: datetime) -> Image:
    element = item.element
    created_at = parse_legacy_timestamp(element.get("created_at")) or fallback
    updated_at = parse_legacy_timestamp(element.get("updated_at")) or created_at
    return Image(
        id=image_id,
        url=item.url,
        order=order,
        is_label=element.get("is_label") is True,
        alt_text=_str_or_none(element.get("alt_text")),
        tags=_tags(element.get("tags")),
        mime_type=_str_or_none(element.get("mime_type")),
        file_size=_int_within(element.get("file_size"), 0, MAX_BIGINT),
        width=_int_within(element.get("width"), 1, MAX_INT),
        height=_int_within(element.get("height"), 1, MAX_INT),
        created_at=created_at,
        updated_at=updated_at,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    # Each tag is a GIN index entry, which must fit in about 8 KB: one incompressible
    # legacy tag longer than that failed its whole backfill batch. History is cut to
    # MAX_HISTORY_TAG_LENGTH characters (the API takes far shorter ones); the full text
    # stays in the JSONB, and in the backup canonicalize takes before rewriting it.
    return tuple(tag[:MAX_HISTORY_TAG_LENGTH] for tag in value if isinstance(tag, str))


def _int_within(value: object, minimum: int, maximum: int) -> int | None:
    # The bounds are the table's column types (bigint, integer): a value that cannot be
    # stored is as unusable as a value of the wrong type.
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        return None
    return value


def _keep_last_label(images: tuple[Image, ...]) -> tuple[Image, ...]:
    labelled = [index for index, image in enumerate(images) if image.is_label]
    if len(labelled) <= 1:
        return images
    last = labelled[-1]
    return tuple(
        image if index == last or not image.is_label else _unlabelled(image)
        for index, image in enumerate(images)
    )


def _unlabelled(image: Image) -> Image:
    return replace(image, is_label=False)
