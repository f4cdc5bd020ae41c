"""A legacy product that lists its label's URL several times: the label rule labels the last
copy, and the other copies must not be published either. The audit counts a payload as
leaking when a photo is a label by id or by the stored object its URL fetches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from app.core.database import unit_of_work
from app.core.settings import Settings
from app.marketplaces import NoPublishablePhoto, PhotoSelection
from app.models import Product
from app.services.converters import converters
from app.services.image_paths import ImagePaths
from app.services.image_reads import ImageList
from app.services.marketplace import MarketplacePayload
from app.services.product_image_service import ProductImageService
from app.services.vinted.vinted_product_converter import VintedProductConverter
from backfill.audit import audit_tenant
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from flags.stages import Flags
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"
TAG = f"{BASE}/7/tag.jpg"


def read_table_service() -> ProductImageService:
    return ProductImageService(
        legacy_sources=["pythonApiWOO"],
        max_images=30,
        url_bases=[BASE],
        paths=ImagePaths(lambda _tenant: Flags(read_table=True)),
    )


class IdOnlyVinted(VintedProductConverter):
    """Vinted as it selected photos before: only the images marked `is_label` left out. The
    audit must catch a converter that publishes the label's file through another image."""

    def from_images(self, product: Product, listed: ImageList) -> MarketplacePayload:
        shown = tuple(image for image in listed.images if not image.is_label)
        if not shown:
            raise NoPublishablePhoto(product.id, self.rules.name, ())
        selection = PhotoSelection(shown, ())
        return MarketplacePayload(
            marketplace=self.rules.name,
            product_id=product.id,
            payload=self.build(product, selection.photos),
            photos=selection.photos,
            excluded=(),
            read_path=listed.read_path,
        )


def backfilled_and_verified(engine: Engine, make_tenant: Callable[[], int]) -> tuple[int, int, int]:
    """A tenant with two legacy products: the same URL three times, and a photo, a copy of
    the label's URL spelled differently, then the label."""
    tenant = make_tenant()
    three_times = insert_legacy_product(engine, tenant, [{"url": TAG}] * 3)
    spelled = insert_legacy_product(
        engine,
        tenant,
        [
            {"url": f"{BASE}/7/front.jpg"},
            {"url": "HTTP://TESTSERVER/media/7/tag.jpg?v=2"},
            {"url": TAG},
        ],
    )
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    return tenant, three_times, spelled


def payload_urls(payload: dict[str, Any]) -> str:
    return repr(payload)


def test_no_copy_of_the_labels_url_is_published_on_table_reads(
    engine: Engine, make_tenant: Callable[[], int], settings: Settings
) -> None:
    tenant, three_times, spelled = backfilled_and_verified(engine, make_tenant)
    service = read_table_service()
    allow_http = settings.model_copy(update={"marketplace_allow_http": True})

    with unit_of_work(engine, tenant) as session:
        listed = service.list_images(session, product_id=three_times).images
        assert [(i.url, i.is_label) for i in listed] == [(TAG, False), (TAG, False), (TAG, True)]
        assert service.get_product_photos(session, product_id=three_times).images == ()
        shown = service.get_product_photos(session, product_id=spelled).images
        assert [i.url for i in shown] == [f"{BASE}/7/front.jpg"]
        for converter in converters(service, allow_http).values():
            try:
                converter.convert(session, product_id=three_times)
            except NoPublishablePhoto as refusal:
                assert refusal.refused == (), "only the label's file: nothing to publish"
            else:
                raise AssertionError(f"{converter.rules.name} published the label's file")
            payload = converter.convert(session, product_id=spelled)
            assert [p.url for p in payload.photos] == [f"{BASE}/7/front.jpg"]
            assert "tag.jpg" not in payload_urls(payload.payload)
            assert [e.reason for e in payload.excluded] == [
                "same file as the label: internal price-tag photo",
                "label: internal price-tag photo",
            ]


def test_the_audit_counts_a_photo_with_the_labels_url_as_a_leak(
    engine: Engine, make_tenant: Callable[[], int], settings: Settings
) -> None:
    tenant, _, _ = backfilled_and_verified(engine, make_tenant)
    service = read_table_service()
    allow_http = settings.model_copy(update={"marketplace_allow_http": True})

    careless = audit_tenant(engine, tenant, service, {"vinted": IdOnlyVinted(service)})
    actual = audit_tenant(engine, tenant, service, converters(service, allow_http))

    assert careless.marketplaces["vinted"].leaking == 2, "both products publish the tag"
    assert careless.read_paths == {"table": 2}
    assert {name: m.leaking for name, m in actual.marketplaces.items()} == {
        "vinted": 0,
        "ebay": 0,
        "etsy": 0,
    }
    assert {name: m.unpublishable for name, m in actual.marketplaces.items()} == {
        "vinted": 1,
        "ebay": 1,
        "etsy": 1,
    }, "the product with only its label's file has nothing to publish"
    assert all(m.refused == 0 for m in actual.marketplaces.values())
