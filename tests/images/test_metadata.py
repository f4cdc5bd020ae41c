"""The enrichment's pure parts: header parsing from the first bytes, the fetch URL policy,
the read-size, Content-Range and backoff rules, and the metadata list operations."""

from __future__ import annotations

import posixpath
import random
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from urllib.parse import unquote
from uuid import uuid4

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image as PillowImage

from app.images.metadata import (
    HeaderFacts,
    NeedMoreBytes,
    Reason,
    Unreadable,
    backoff_delay,
    content_range,
    next_read_size,
    parse_header,
    sniff,
)
from app.images.operations import LABEL_ALT_TEXT, default_alt_text, photos, set_metadata
from app.images.record import Image
from app.images.urls import check_image_url, fetch_refusal
from app.images.validation import MAX_ALT_TEXT
from app.storage.base import url_for
from tests.images.strategies import image_lists

LATER = datetime(2101, 1, 1, tzinfo=UTC)
LIMIT = 16 * 1024 * 1024

# (Pillow format, save options, expected MIME type)
KINDS = {
    "jpeg": ("JPEG", {}, "image/jpeg"),
    "jpeg-exif": ("JPEG", {"exif": b"Exif\x00\x00" + bytes(60_000)}, "image/jpeg"),
    "png": ("PNG", {}, "image/png"),
    "png-rgba": ("PNG", {}, "image/png"),
    "webp": ("WEBP", {}, "image/webp"),
    "webp-lossless": ("WEBP", {"lossless": True}, "image/webp"),
    "gif": ("GIF", {}, "image/gif"),
}


def encode(kind: str, width: int, height: int, seed: int = 0) -> bytes:
    """A real image of the kind, with noisy pixels so that the file is not tiny."""
    pillow_format, options, _mime = KINDS[kind]
    mode = "RGBA" if kind == "png-rgba" else "RGB"
    pixels = random.Random(seed).randbytes(width * height * len(mode))
    image = PillowImage.frombytes(mode, (width, height), pixels)
    out = BytesIO()
    image.save(out, pillow_format, **options)
    return out.getvalue()


def read_like_the_fetcher(data: bytes, first: int) -> HeaderFacts | Unreadable:
    """What the fetcher ends with: the first bytes, then more until the header parses."""
    wanted = first
    while True:
        head = data[:wanted]
        parsed = parse_header(head, complete=len(head) == len(data))
        if not isinstance(parsed, NeedMoreBytes):
            return parsed
        more = next_read_size(len(head), at_least=parsed.at_least, total=len(data), limit=LIMIT)
        assert more is not None, "the object is smaller than the limit: it must be readable"
        wanted = more


# --- the header parser -------------------------------------------------------------------


@given(
    kind=st.sampled_from(sorted(KINDS)),
    width=st.integers(1, 120),
    height=st.integers(1, 120),
    first=st.integers(1, 70_000),
)
def test_type_and_pixels_come_from_the_first_bytes_of_every_accepted_format(
    kind: str, width: int, height: int, first: int
) -> None:
    data = encode(kind, width, height)
    facts = read_like_the_fetcher(data, first)
    assert facts == HeaderFacts(KINDS[kind][2], width, height)


@given(
    kind=st.sampled_from(sorted(KINDS)),
    width=st.integers(1, 80),
    height=st.integers(1, 80),
    cut=st.integers(0, 200_000),
)
def test_a_prefix_gives_the_right_answer_or_asks_for_more_never_a_wrong_one(
    kind: str, width: int, height: int, cut: int
) -> None:
    data = encode(kind, width, height)
    expected = HeaderFacts(KINDS[kind][2], width, height)
    parsed = parse_header(data[:cut], complete=cut >= len(data))
    if cut >= len(data):
        assert parsed == expected
    elif isinstance(parsed, NeedMoreBytes):
        assert parsed.at_least in (None, len(data))
    else:
        assert parsed == expected


def test_jpeg_png_and_gif_headers_fit_in_64_kib_and_a_webp_asks_for_its_whole_length() -> None:
    for kind in ("jpeg", "png", "gif"):
        data = encode(kind, 1000, 800)
        assert len(data) > 64 * 1024
        assert parse_header(data[: 64 * 1024], complete=False) == HeaderFacts(
            KINDS[kind][2], 1000, 800
        )
    webp = encode("webp-lossless", 400, 300)
    assert len(webp) > 64 * 1024
    assert parse_header(webp[: 64 * 1024], complete=False) == NeedMoreBytes(len(webp))


def test_the_bytes_decide_not_the_name() -> None:
    png = encode("png", 33, 21)
    assert parse_header(png, complete=True) == HeaderFacts("image/png", 33, 21)
    assert sniff(png) == "PNG"


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"", Reason.NOT_AN_IMAGE),
        (b"<!doctype html><html><body>Not found</body></html>", Reason.NOT_AN_IMAGE),
        (b"%PDF-1.7\n" + bytes(100), Reason.NOT_AN_IMAGE),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            Reason.UNSUPPORTED_FORMAT,
        ),
        (b"\x00\x00\x00\x1cftypavif" + bytes(40), Reason.UNSUPPORTED_FORMAT),
        (b"\x00\x00\x00\x18ftypheic" + bytes(40), Reason.UNSUPPORTED_FORMAT),
        (b"II*\x00" + bytes(40), Reason.UNSUPPORTED_FORMAT),
    ],
)
def test_what_is_not_a_readable_image_says_why(head: bytes, reason: Reason) -> None:
    parsed = parse_header(head, complete=True)
    assert isinstance(parsed, Unreadable)
    assert parsed.reason is reason


def test_a_bmp_is_named_as_an_unsupported_format() -> None:
    out = BytesIO()
    PillowImage.new("RGB", (5, 4)).save(out, "BMP")
    parsed = parse_header(out.getvalue(), complete=True)
    assert parsed == Unreadable(Reason.UNSUPPORTED_FORMAT, "BMP (read: JPEG, PNG, WEBP, GIF)")


@given(kind=st.sampled_from(sorted(KINDS)), keep=st.integers(0, 16))
def test_a_whole_object_cut_short_is_unreadable_not_an_answer(kind: str, keep: int) -> None:
    data = encode(kind, 40, 30)
    parsed = parse_header(data[: 4 + keep], complete=True)
    assert isinstance(parsed, Unreadable)


@given(st.binary(max_size=4096), st.booleans())
def test_any_bytes_give_an_answer_and_only_a_known_signature_gives_facts(
    head: bytes, complete: bool
) -> None:
    parsed = parse_header(head, complete=complete)
    if isinstance(parsed, HeaderFacts):
        assert sniff(head) is not None
    if complete:
        assert not isinstance(parsed, NeedMoreBytes)


# --- read sizes, Content-Range, backoff -------------------------------------------------


@given(
    read=st.integers(1, 10**8),
    at_least=st.none() | st.integers(0, 10**9),
    total=st.none() | st.integers(0, 10**9),
    limit=st.integers(1, 10**9),
)
def test_the_next_read_grows_and_stays_within_the_object_and_the_limit(
    read: int, at_least: int | None, total: int | None, limit: int
) -> None:
    wanted = next_read_size(read, at_least=at_least, total=total, limit=limit)
    if wanted is not None:
        assert read < wanted <= limit
        assert total is None or wanted <= total
        assert wanted >= min(read * 4, total if total is not None else read * 4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-65535/2000000", (0, 65535, 2_000_000)),
        ("bytes 0-99/100", (0, 99, 100)),
        ("bytes 0-65535/*", (0, 65535, None)),
        ("BYTES 0-1/2", (0, 1, 2)),
        ("bytes 0-100/100", None),
        ("bytes 5-1/10", None),
        ("bytes */100", None),
        ("items 0-1/2", None),
        (None, None),
        ("", None),
    ],
)
def test_content_range_is_read_strictly(
    value: str | None, expected: tuple[int, int, int | None] | None
) -> None:
    assert content_range(value) == expected


@given(
    attempt=st.integers(0, 1000),
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 100),
    jitter=st.floats(0, 1, exclude_max=True),
)
def test_backoff_is_jittered_under_an_exponential_ceiling_and_the_cap(
    attempt: int, base: float, cap: float, jitter: float
) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap, jitter=jitter)
    assert 0 <= delay <= min(cap, base * 2.0 ** min(attempt, 30)) + 1e-9


# --- the fetch URL policy ----------------------------------------------------------------

BASES = ("http://127.0.0.1:8000/media", "https://cdn.example.com/shop/photos")

OTHER_HOSTS = [
    "127.0.0.2",
    "localhost",
    "[::1]",
    "10.0.0.1",
    "169.254.169.254",
    "CDN.Example.com",
    "cdn.example.com.",
    "cdn.example.com.evil.io",
    "evil.io",
    "0x7f.0.0.1",
    "2130706433",
]
OTHER_PORTS = [":80", ":443", ":08000", ":8001", ":", ":99999", ":x"]
SEGMENTS = [
    "a.jpg",
    "p",
    "..",
    ".",
    "%2e%2e",
    "%2E.",
    "%2f",
    "a%2Fb",
    "%5c",
    "%252e%252e",
    "%70",
    "",
    "x y",
    "%00",
    "é.jpg",
    "a\\b",
]
USERINFO = ["user@", "user:pw@", "127.0.0.1:8000@", "cdn.example.com@"]
SUFFIXES = ["", "?a=1", "#frag", "?next=http://evil.io/", "#@evil.io", "?@evil.io"]


@st.composite
def hostile_urls(draw: st.DrawFn) -> str:
    """A URL under a base, then zero to three parts swapped for hostile variants."""
    base = httpx.URL(draw(st.sampled_from(BASES)))
    parts = {
        "scheme": base.scheme,
        "credentials": "",
        "host": base.host,
        "port": f":{base.port}" if base.port else "",
        "prefix": base.path,
        "path": draw(st.sampled_from(["a.jpg", "p/1.png", "x/y/z.webp"])),
        "suffix": "",
    }
    variants = {
        "scheme": [base.scheme.upper(), "ftp", "file", "gopher", ""],
        "credentials": USERINFO,
        "host": OTHER_HOSTS,
        "port": OTHER_PORTS,
        "prefix": [base.path + "X", "", "/private", base.path.rsplit("/", 1)[0]],
        "path": None,
        "suffix": SUFFIXES,
    }
    for name in draw(st.lists(st.sampled_from(sorted(variants)), max_size=3)):
        choices = variants[name]
        if choices is None:
            segments = draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4))
            parts["path"] = "/".join([*segments, parts["path"]])
        else:
            parts[name] = draw(st.sampled_from(choices))
    return "{scheme}://{credentials}{host}{port}{prefix}/{path}{suffix}".format(**parts)


def _port(url: httpx.URL) -> int:
    return url.port or {"http": 80, "https": 443}[url.scheme]


def under_a_base_by_another_parser(url: str) -> bool:
    """Independent oracle: httpx's parser, the path decoded and its dots resolved."""
    parsed = httpx.URL(url)
    path = posixpath.normpath(unquote(parsed.path))
    for base in BASES:
        allowed = httpx.URL(base)
        # Default ports made explicit on both sides: httpx drops ":443" from "https://"
        # but keeps it after "HTTPS://", which is the same origin.
        same_origin = (parsed.scheme, parsed.host, _port(parsed)) == (
            allowed.scheme,
            allowed.host,
            _port(allowed),
        )
        if same_origin and path.startswith(allowed.path + "/"):
            return True
    return False


@given(hostile_urls())
def test_no_url_outside_a_base_is_ever_accepted(url: str) -> None:
    if fetch_refusal(url, BASES) is None:
        assert under_a_base_by_another_parser(url)
        assert "@" not in url.split("//", 1)[1].split("/", 1)[0]
        assert ".." not in unquote(httpx.URL(url).path).split("/")


@given(
    st.lists(
        st.from_regex(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}\Z").filter(
            lambda segment: not segment.startswith(".")
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(BASES),
)
def test_every_url_the_storage_builds_is_accepted(parts: list[str], base: str) -> None:
    url = url_for(base, "/".join(parts))
    assert fetch_refusal(url, BASES) is None
    assert check_image_url(url, BASES) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/media/p/1.jpg",
        "http://127.0.0.1:8000/media/p/1.jpg?v=2",
        "HTTP://127.0.0.1:8000/media/p/1.jpg",
        "https://cdn.example.com:443/shop/photos/x.webp",
        "https://CDN.example.com/shop/photos/x.webp",
        "http://127.0.0.1:8000/media/%70/1.jpg",
    ],
)
def test_urls_under_a_base_are_fetched(url: str) -> None:
    assert fetch_refusal(url, BASES) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/media",
        "http://127.0.0.1:8000/media/",
        "http://127.0.0.1:8000/mediax/1.jpg",
        "http://127.0.0.1:8000/private/1.jpg",
        "http://127.0.0.1:8001/media/1.jpg",
        "http://127.0.0.1/media/1.jpg",
        "https://127.0.0.1:8000/media/1.jpg",
        "http://localhost:8000/media/1.jpg",
        "http://user@127.0.0.1:8000/media/1.jpg",
        "http://127.0.0.1:8000@evil.io/media/1.jpg",
        "http://127.0.0.1:8000/media/../admin",
        "http://127.0.0.1:8000/media/%2e%2e/admin",
        "http://127.0.0.1:8000/media/a%2f..%2f..%2fadmin",
        "http://127.0.0.1:8000/media/%252e%252e/admin",
        "http://127.0.0.1:8000/media\\..\\admin",
        "http://127.0.0.1:8000/media/a b.jpg",
        "http://127.0.0.1:8000/media/é.jpg",
        "ftp://127.0.0.1:8000/media/1.jpg",
        "file:///media/1.jpg",
        "//127.0.0.1:8000/media/1.jpg",
        "/media/1.jpg",
        "http://169.254.169.254/latest/meta-data",
        "https://cdn.example.com/shop/photosX/1.jpg",
        "https://cdn.example.com.evil.io/shop/photos/1.jpg",
        "http://127.0.0.1:99999/media/1.jpg",
    ],
)
def test_urls_outside_the_bases_are_refused_with_a_reason(url: str) -> None:
    assert fetch_refusal(url, BASES)


# --- the metadata list operations --------------------------------------------------------


@given(image_lists(min_size=1), st.data())
def test_set_metadata_fills_one_image_and_never_replaces_a_written_alt_text(
    current: tuple[Image, ...], data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(current))
    result = set_metadata(
        current,
        target.id,
        mime_type="image/png",
        file_size=1234,
        width=3,
        height=4,
        alt_text="default words",
        now=LATER,
    )
    after = {image.id: image for image in result}
    assert [image.id for image in result] == [
        image.id for image in sorted(current, key=lambda i: i.order)
    ]
    changed = after[target.id]
    assert (changed.mime_type, changed.file_size, changed.width, changed.height) == (
        "image/png",
        1234,
        3,
        4,
    )
    assert changed.alt_text == (target.alt_text if target.alt_text is not None else "default words")
    for image in current:
        if image.id != target.id:
            assert after[image.id] == replace(image, order=after[image.id].order)
    again = set_metadata(
        result,
        target.id,
        mime_type="image/png",
        file_size=1234,
        width=3,
        height=4,
        alt_text="other words",
        now=datetime(2102, 1, 1, tzinfo=UTC),
    )
    assert again == result, "a second pass with the same facts changes nothing"


@given(image_lists(min_size=1), st.data())
def test_set_metadata_with_nothing_read_keeps_the_facts_and_fills_only_a_missing_alt(
    current: tuple[Image, ...], data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(current))
    result = set_metadata(
        current,
        target.id,
        mime_type=None,
        file_size=None,
        width=None,
        height=None,
        alt_text="words",
        now=LATER,
    )
    changed = next(image for image in result if image.id == target.id)
    assert (changed.mime_type, changed.file_size, changed.width, changed.height) == (
        target.mime_type,
        target.file_size,
        target.width,
        target.height,
    )
    assert changed.alt_text == (target.alt_text if target.alt_text is not None else "words")


@given(image_lists(min_size=1), st.text(max_size=600))
def test_default_alt_text_numbers_the_photos_and_names_the_label(
    current: tuple[Image, ...], title: str
) -> None:
    shown = photos(current)
    for image in current:
        text = default_alt_text(current, image.id, title)
        assert len(text) <= MAX_ALT_TEXT
        if image not in shown:  # the label, or another image of its file
            assert text == LABEL_ALT_TEXT
        else:
            position = [photo.id for photo in shown].index(image.id) + 1
            assert text.lower().endswith(f"photo {position} of {len(shown)}")


def test_default_alt_text_reads_like_a_sentence() -> None:
    created = datetime(2024, 5, 1, tzinfo=UTC)
    current = tuple(
        Image(
            id=uuid4(),
            url=f"http://127.0.0.1:8000/media/{i}.jpg",
            order=i,
            is_label=i == 2,
            alt_text=None,
            tags=(),
            mime_type=None,
            file_size=None,
            width=None,
            height=None,
            created_at=created,
            updated_at=created,
        )
        for i in range(6)
    )
    texts = [default_alt_text(current, image.id, "  Levi's   501 jeans ") for image in current]
    assert texts == [
        "Levi's 501 jeans, photo 1 of 5",
        "Levi's 501 jeans, photo 2 of 5",
        "price label, not published",
        "Levi's 501 jeans, photo 3 of 5",
        "Levi's 501 jeans, photo 4 of 5",
        "Levi's 501 jeans, photo 5 of 5",
    ]
    assert default_alt_text(current, current[0].id, "   ") == "Photo 1 of 5"
    long = default_alt_text(current, current[1].id, "x" * 1000)
    assert len(long) == MAX_ALT_TEXT
    assert long.endswith("…, photo 2 of 5")
