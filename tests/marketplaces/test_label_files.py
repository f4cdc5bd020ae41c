"""No photo is published from the label's file: not the label itself, and not another image
of the product whose URL fetches the same stored object (a legacy product can list the same
URL several times; the label rule labels only the last)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.images import Image
from app.images.operations import photos, stored_object
from app.marketplaces import MARKETPLACES, MarketplaceRules, NoPublishablePhoto, select_photos
from app.marketplaces.selection import LABEL, LABEL_FILE
from tests.images.strategies import images

MOMENT = datetime(2024, 5, 1, tzinfo=UTC)

# Spellings of one stored object: what a fetcher (browser, marketplace) sends as the same
# request for the same object. The first of each tuple is the plain form.
SAME_OBJECT = (
    (
        "https://cdn.example.com/p/1.jpg",
        "https://cdn.example.com/p/1.jpg",
        "HTTPS://CDN.Example.COM/p/1.jpg",  # scheme and host are case-insensitive
        "https://cdn.example.com:443/p/1.jpg",  # the default port made explicit
        "https://cdn.example.com/p/1.jpg?v=2",  # a cache-buster or a resize of the same file
        "https://cdn.example.com/p/1.jpg#zoom",  # a fragment is never sent
        "https://cdn.example.com/p/%31.jpg",  # percent-encoded "1"
        " https://cdn.example.com/p/1.jpg\n",  # surrounding whitespace, stripped by parsers
        "http://cdn.example.com/p/1.jpg",  # the same object over http
        "https://cdn.example.com./p/1.jpg",  # the fully qualified host name
    ),
    (
        "http://testserver/media/7/label.png",
        "HTTP://testserver:80/media/7/label.png?download=1#x",
        "https://user@testserver/media/7/%6Cabel.png",
    ),
)
# Different objects: the path (a storage key) is case-sensitive, ports and hosts differ.
OTHER_OBJECTS = (
    "https://cdn.example.com/p/1.JPG",
    "https://cdn.example.com/p/2.jpg",
    "https://cdn.example.com:8443/p/1.jpg",
    "https://other.example.com/p/1.jpg",
    "https://cdn.example.com/p/1.jpg/",
    "relative/1.jpg",
    "ftp://cdn.example.com/p/1.jpg",
)
URLS = st.sampled_from([url for group in SAME_OBJECT for url in group] + list(OTHER_OBJECTS))
rules_of = st.sampled_from(sorted(MARKETPLACES.values(), key=lambda r: r.name))


def image(url: str, order: int, *, is_label: bool = False) -> Image:
    return Image(
        id=uuid4(),
        url=url,
        order=order,
        is_label=is_label,
        alt_text=None,
        tags=(),
        mime_type=None,
        file_size=None,
        width=None,
        height=None,
        created_at=MOMENT,
        updated_at=MOMENT,
    )


@st.composite
def products(draw: st.DrawFn) -> tuple[Image, ...]:
    """Up to 12 images whose URLs are often spellings of the same few objects; any number of
    labels (a hostile list), unique ids, orders 0..n-1."""
    size = draw(st.integers(0, 12))
    ids = draw(st.lists(st.uuids(), min_size=size, max_size=size, unique=True))
    return tuple(
        replace(
            draw(images(order=order)),
            id=ids[order],
            url=draw(URLS),
            is_label=draw(st.integers(0, 3)) == 0,
            width=None,
            height=None,
            mime_type=None,
        )
        for order in range(size)
    )


def label_urls_and_objects(listed: tuple[Image, ...]) -> tuple[set[str], set[str]]:
    labels = [i for i in listed if i.is_label]
    return {i.url for i in labels}, {stored_object(i.url) for i in labels}


@pytest.mark.parametrize("spellings", SAME_OBJECT, ids=lambda group: group[0])
def test_every_spelling_of_one_object_names_that_object(spellings: tuple[str, ...]) -> None:
    assert {stored_object(url) for url in spellings} == {stored_object(spellings[0])}


def test_a_different_path_host_or_port_is_a_different_object() -> None:
    plain = stored_object(SAME_OBJECT[0][0])
    assert all(stored_object(url) != plain for url in OTHER_OBJECTS)
    assert len({stored_object(url) for url in OTHER_OBJECTS}) == len(OTHER_OBJECTS)


@given(st.text())
def test_any_text_has_a_stored_object_and_equal_urls_share_it(url: str) -> None:
    assert stored_object(url) == stored_object(str(url))  # never raises, even on "http://[::1"


@given(products())
def test_no_photo_shares_a_url_or_a_stored_object_with_a_label(listed: tuple[Image, ...]) -> None:
    label_urls, label_objects = label_urls_and_objects(listed)
    shown = photos(listed)
    assert not any(photo.is_label for photo in shown)
    assert not {photo.url for photo in shown} & label_urls
    assert not {stored_object(photo.url) for photo in shown} & label_objects
    # Nothing else is held back, and the order is kept.
    assert list(shown) == [
        i
        for i in sorted(listed, key=lambda i: i.order)
        if not i.is_label and stored_object(i.url) not in label_objects
    ]


@given(products(), rules_of, st.booleans())
def test_no_marketplace_gets_the_labels_file_and_each_copy_says_why(
    listed: tuple[Image, ...], rules: MarketplaceRules, allow_http: bool
) -> None:
    label_urls, label_objects = label_urls_and_objects(listed)
    selection = select_photos(listed, rules, allow_http=allow_http)
    assert not {photo.url for photo in selection.photos} & label_urls
    assert not {stored_object(photo.url) for photo in selection.photos} & label_objects
    copies = {str(i.id) for i in listed if not i.is_label and stored_object(i.url) in label_objects}
    assert {e.image_id for e in selection.excluded if e.reason == LABEL_FILE} == copies
    assert {e.image_id for e in selection.excluded if e.reason == LABEL} == {
        str(i.id) for i in listed if i.is_label
    }


def test_a_legacy_product_with_one_url_three_times_has_no_photo_to_publish() -> None:
    # The label rule labels the last of the three: the first two are the label's file.
    same = "https://cdn.example.com/p/tag.jpg"
    listed = (image(same, 0), image(same, 1), image(same, 2, is_label=True))

    assert photos(listed) == ()
    selection = select_photos(listed, MARKETPLACES["vinted"])
    assert selection.photos == ()
    assert [e.reason for e in selection.excluded] == [LABEL_FILE, LABEL_FILE, LABEL]
    refusal = NoPublishablePhoto(1, "vinted", selection.excluded)
    assert "same file as the label" in str(refusal)
    assert refusal.refused == (), "only the label's file: nothing a rule refused"


def test_a_photo_a_rule_refuses_is_a_refusal_not_a_label() -> None:
    listed = (image("http://cdn.example.com/p/a.jpg", 0), image("https://x.example/t.jpg", 1))
    labelled = (listed[0], replace(listed[1], is_label=True))
    selection = select_photos(labelled, MARKETPLACES["etsy"])
    refusal = NoPublishablePhoto(1, "etsy", selection.excluded)
    assert [e.image_id for e in refusal.refused] == [str(listed[0].id)]
    assert "not https" in refusal.refused[0].reason
