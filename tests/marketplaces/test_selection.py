"""Photo selection for Vinted, eBay and Etsy, over generated image lists: no label ever
leaves, order is kept, the cover is the first publishable image, caps hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.images import Image
from app.marketplaces import MARKETPLACES, MarketplaceRules, NoPublishablePhoto, select_photos
from app.marketplaces.selection import LABEL
from tests.images.strategies import images

rules_of = st.sampled_from(sorted(MARKETPLACES.values(), key=lambda r: r.name))


@st.composite
def listings(draw: st.DrawFn) -> tuple[Image, ...]:
    """Up to 30 images in order, any of them possibly a label (a hostile list), with https,
    http or odd URLs, known and unknown types, small and large pictures."""
    size = draw(st.integers(0, 30))
    ids = draw(st.lists(st.uuids(), min_size=size, max_size=size, unique=True))
    drawn = []
    for order in range(size):
        image = draw(images(order=order))
        drawn.append(
            replace(
                image,
                id=ids[order],
                url=draw(
                    st.sampled_from(["https://cdn.example/p/", "http://cdn.example/p/", "ftp://x/"])
                )
                + f"{order}.jpg",
                is_label=draw(st.booleans()) and draw(st.booleans()),
                mime_type=draw(
                    st.none()
                    | st.sampled_from(["image/jpeg", "image/png", "image/gif", "image/tiff"])
                ),
            )
        )
    return tuple(drawn)


@given(listings(), rules_of, st.booleans())
def test_no_label_ever_leaves_and_order_and_caps_hold(
    listed: tuple[Image, ...], rules: MarketplaceRules, allow_http: bool
) -> None:
    selection = select_photos(listed, rules, allow_http=allow_http)
    assert not any(photo.is_label for photo in selection.photos)
    assert len(selection.photos) <= rules.max_photos
    orders = [photo.order for photo in selection.photos]
    assert orders == sorted(orders), "relative order kept"
    # Every image is either published or excluded with a reason, never both, never lost.
    published = {photo.id for photo in selection.photos}
    excluded = {e.image_id for e in selection.excluded}
    assert {str(i) for i in published} | excluded == {str(i.id) for i in listed}
    assert not ({str(i) for i in published} & excluded)
    labels = {str(i.id) for i in listed if i.is_label}
    assert {e.image_id for e in selection.excluded if e.reason == LABEL} == labels


@given(listings(), rules_of)
def test_the_cover_is_the_first_image_that_passes_every_rule(
    listed: tuple[Image, ...], rules: MarketplaceRules
) -> None:
    selection = select_photos(listed, rules)
    passing = [
        image
        for image in listed
        if not image.is_label
        and image.url.startswith("https://")
        and (image.mime_type is None or image.mime_type in rules.accepted_types)
        and not (
            rules.min_longest_side
            and image.width
            and image.height
            and max(image.width, image.height) < rules.min_longest_side
        )
    ]
    if passing:
        assert selection.photos[0] == passing[0]
        assert list(selection.photos) == passing[: rules.max_photos]
    else:
        assert selection.photos == ()


@given(listings(), rules_of)
def test_a_label_only_product_is_an_error_never_an_empty_listing(
    listed: tuple[Image, ...], rules: MarketplaceRules
) -> None:
    only_labels = tuple(replace(image, is_label=True) for image in listed)
    selection = select_photos(only_labels, rules, allow_http=True)
    assert selection.photos == ()
    error = NoPublishablePhoto(7, rules.name, selection.excluded)
    assert ("label" in str(error)) or not listed
    assert error.field == "images"


def test_each_rule_names_its_reason() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    base = Image(
        id=uuid4(),
        url="https://cdn.example/a.jpg",
        order=0,
        is_label=False,
        alt_text=None,
        tags=(),
        mime_type="image/jpeg",
        file_size=None,
        width=400,
        height=300,
        created_at=moment,
        updated_at=moment,
    )
    ebay = MARKETPLACES["ebay"]
    assert select_photos([base], ebay).excluded[0].reason.startswith("400 px on the longest side")
    gif = replace(base, mime_type="image/gif", width=None, height=None)
    assert (
        "not accepted by vinted" in select_photos([gif], MARKETPLACES["vinted"]).excluded[0].reason
    )
    http = replace(base, url="http://cdn.example/a.jpg")
    assert "not https" in select_photos([http], MARKETPLACES["etsy"]).excluded[0].reason
    assert select_photos([http], MARKETPLACES["etsy"], allow_http=True).photos == (http,)
    many = [replace(base, id=uuid4(), order=i, width=None) for i in range(12)]
    capped = select_photos(many, MARKETPLACES["etsy"])
    assert len(capped.photos) == 10
    assert [e.reason for e in capped.excluded] == ["over etsy's limit of 10 photos"] * 2


@pytest.mark.parametrize("name", ["vinted", "ebay", "etsy"])
def test_every_marketplace_cites_its_sources(name: str) -> None:
    assert MARKETPLACES[name].sources
