"""Hypothesis strategies for images and dirty legacy `products.images` columns.

Kept separate from the tests so the SQL differential test can reuse them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from app.images.projection import image_to_element
from app.images.record import Image
from app.images.validation import MAX_TAG_LENGTH

JsonValue = object

# A small pool so that duplicate URLs are common; includes spaces and non-ASCII on purpose.
URL_POOL = (
    "https://cdn.example.com/p/1.jpg",
    "https://cdn.example.com/p/2.jpg",
    "https://cdn.example.com/p/2.jpg?v=2",
    " https://cdn.example.com/p/padded.jpg ",
    "https://cdn.example.com/p/étiquette.png",
    "relative/path.webp",
)

moments = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(UTC),
)
"""Aware UTC datetimes with microseconds, far from the representable limits."""

urls = st.one_of(st.sampled_from(URL_POOL), st.text(min_size=1).filter(lambda u: u.strip() != ""))

tags = st.from_regex(r"\A[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,2}\Z").filter(
    lambda tag: len(tag) <= MAX_TAG_LENGTH
)
tag_tuples = st.lists(tags, max_size=5, unique=True).map(tuple)


@st.composite
def images(draw: st.DrawFn, *, order: int = 0) -> Image:
    """Draw one valid image with the given order and no label."""
    created_at = draw(moments)
    return Image(
        id=draw(st.uuids()),
        url=draw(urls),
        order=order,
        is_label=False,
        alt_text=draw(st.none() | st.text(max_size=40)),
        tags=draw(tag_tuples),
        mime_type=draw(st.none() | st.sampled_from(["image/jpeg", "image/png", "image/webp"])),
        file_size=draw(st.none() | st.integers(min_value=0, max_value=50_000_000)),
        width=draw(st.none() | st.integers(min_value=1, max_value=10_000)),
        height=draw(st.none() | st.integers(min_value=1, max_value=10_000)),
        created_at=created_at,
        updated_at=draw(st.sampled_from([created_at, created_at + timedelta(seconds=1)])),
    )


@st.composite
def image_lists(draw: st.DrawFn, *, min_size: int = 0, max_size: int = 8) -> tuple[Image, ...]:
    """Draw a valid ordered image list: unique ids, orders 0..n-1, at most one label."""
    size = draw(st.integers(min_value=min_size, max_value=max_size))
    drawn = [draw(images(order=order)) for order in range(size)]
    ids = draw(st.lists(st.uuids(), min_size=size, max_size=size, unique=True))
    label_at = draw(st.none() | st.integers(min_value=0, max_value=max(size - 1, 0)))
    return tuple(
        Image(
            id=ids[index],
            url=image.url,
            order=image.order,
            is_label=(index == label_at),
            alt_text=image.alt_text,
            tags=image.tags,
            mime_type=image.mime_type,
            file_size=image.file_size,
            width=image.width,
            height=image.height,
            created_at=image.created_at,
            updated_at=image.updated_at,
        )
        for index, image in enumerate(drawn)
    )


usable_orders = st.one_of(
    st.integers(min_value=-3, max_value=12),
    st.floats(min_value=-3, max_value=12, allow_nan=False, allow_infinity=False),
    st.sampled_from(["3", " 2 ", "-1", "1.5", "007", "0.50", "\t4\n"]),
)
unusable_orders = st.one_of(
    st.booleans(),
    st.none(),
    st.sampled_from(["", "abc", "3a", "1e3", "+2", "1.", ".5", "٣", "1,5"]),
    st.just([1]),
    st.just({"n": 1}),
)


@st.composite
def timestamp_texts(draw: st.DrawFn) -> str:
    """Draw a timestamp string in one of the accepted ISO 8601 spellings."""
    moment = draw(moments).replace(tzinfo=None)
    separator = draw(st.sampled_from(["T", " "]))
    digits = draw(st.integers(min_value=0, max_value=6))
    fraction = f".{moment.microsecond:06d}"[: digits + 1] if digits else ""
    offset_minutes = draw(st.sampled_from([0, 60, -300, 330, 14 * 60]))
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    suffix = draw(
        st.sampled_from(
            [
                "",
                "Z",
                f"{sign}{hours:02d}:{minutes:02d}",
                f"{sign}{hours:02d}{minutes:02d}",
                f"{sign}{hours:02d}" if minutes == 0 else "Z",
            ]
        )
    )
    return f"{moment:%Y-%m-%d}{separator}{moment:%H:%M:%S}{fraction}{suffix}"


invalid_timestamps = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(
        [
            "",
            "yesterday",
            "2026-13-45T00:00:00",
            "2026-02-30 10:00:00",
            "2026-01-15",
            "2026-01-15T09:16:52.1234567",
            "2026-01-15T09:16:52+25:00",
            "2026-01-15t09:16:52",
            "0001-01-01T00:00:00+01:00",
        ]
    ),
)


@st.composite
def good_legacy_elements(draw: st.DrawFn) -> dict[str, JsonValue]:
    """Draw an object with a usable url and legacy-style, possibly broken, order/created_at."""
    element: dict[str, JsonValue] = {"url": draw(urls)}
    if draw(st.booleans()):
        element["order"] = draw(st.one_of(usable_orders, unusable_orders))
    if draw(st.booleans()):
        element["created_at"] = draw(st.one_of(timestamp_texts(), invalid_timestamps))
    return element


bad_url_elements: st.SearchStrategy[dict[str, JsonValue]] = st.one_of(
    st.just({}),
    st.just({"url": None, "order": 1}),
    st.fixed_dictionaries({"url": st.one_of(st.integers(), st.booleans(), st.just(["x"]))}),
    st.fixed_dictionaries({"url": st.sampled_from(["", " ", "\t\n"])}),
)
non_objects = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(URL_POOL), st.just([URL_POOL[0]])
)

dirty_legacy_arrays = st.lists(
    st.one_of(good_legacy_elements(), good_legacy_elements(), bad_url_elements, non_objects),
    max_size=10,
)
"""Legacy arrays mixing usable elements with every kind of broken one."""

dirty_legacy_columns = st.one_of(
    dirty_legacy_arrays,
    dirty_legacy_arrays,
    dirty_legacy_arrays,
    st.none(),
    st.just({"url": URL_POOL[0]}),
    st.sampled_from(URL_POOL),
    st.integers(),
)
"""Whole decoded column values: mostly arrays, sometimes null, an object, a string, a number."""

product_ids = st.integers(min_value=1, max_value=2**31 - 1)


def fixed_offset(minutes: int) -> timezone:
    """Return a fixed-offset timezone, for tests that need non-UTC input."""
    return timezone(timedelta(minutes=minutes))


@st.composite
def mixed_format_arrays(draw: st.DrawFn) -> list[JsonValue]:
    """Draw an array written by the new code, with legacy and broken elements mixed in."""
    written: list[JsonValue] = [image_to_element(image) for image in draw(image_lists())]
    for element in written:
        assert isinstance(element, dict)
        if draw(st.booleans()):
            element["is_label"] = draw(st.sampled_from([True, False, "true", 1, None]))
        if draw(st.booleans()):
            element["id"] = draw(st.sampled_from(["not-a-uuid", written_id(written), None]))
    extra = draw(st.lists(st.one_of(good_legacy_elements(), bad_url_elements, non_objects)))
    return draw(st.permutations([*written, *extra]))


def written_id(elements: list[JsonValue]) -> object:
    """Return the id of the first element, so that carried ids sometimes collide."""
    first = elements[0]
    return first.get("id") if isinstance(first, dict) else None
