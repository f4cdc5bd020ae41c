"""The enrichment's writes: one transaction per batch of products, each product locked in id
order inside it; a product locked by someone else leaves only itself for the next run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Engine, event, text

from app.core.database import tenant_schema
from app.core.settings import Settings
from app.services.image_paths import ImagePaths
from app.services.product_image_service import ProductImageService
from backfill.enrich import enrich_tenants
from flags.stages import Flags
from tests.backfill import test_enrich
from tests.backfill.test_enrich import (
    FAST,
    MediaServer,
    encode,
    enrich,
    failures,
    migrated_product,
    migrated_products,
    rows,
)
from tests.images_db import assert_representations_equal

media = test_enrich.media  # the same fixtures: a media server on loopback
media_settings = test_enrich.media_settings


def writers(engine: Engine, tenant: int) -> dict[int, set[str]]:
    """Per product: the transactions that last wrote its row and its images' rows."""
    schema = tenant_schema(tenant)
    with engine.connect() as connection:
        found: dict[int, set[str]] = {}
        for product_id, xmin in connection.execute(
            text(
                f"SELECT id, xmin::text FROM {schema}.products UNION ALL "
                f"SELECT product_id, xmin::text FROM {schema}.product_images"
            )
        ):
            found.setdefault(product_id, set()).add(xmin)
        return found


def test_a_batch_of_products_is_written_in_one_transaction_locked_in_id_order(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    products = migrated_products(
        engine,
        tenant,
        [
            [media.serve(f"{p}-{k}.png", encode("PNG", 10 + p, 10 + k)) for k in range(2)]
            for p in range(6)
        ],
    )
    locked: list[int] = []

    def record_lock(
        _connection: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
    ) -> None:
        if "FOR UPDATE" in statement and "products.id = " in statement:
            locked.extend(v for v in parameters.values() if type(v) is int and v in products)

    event.listen(engine, "before_cursor_execute", record_lock)
    try:
        result = enrich(engine, media_settings, tenant, replace(FAST, batch_products=3))
    finally:
        event.remove(engine, "before_cursor_execute", record_lock)

    assert (result.enriched, result.failed, result.skipped) == (12, 0, 0)
    written_by = writers(engine, tenant)
    first = set().union(*(written_by[p] for p in products[:3]))
    second = set().union(*(written_by[p] for p in products[3:]))
    assert len(first) == 1 and len(second) == 1 and first != second, written_by
    assert locked == products, "each product locked once, in ascending id order"
    assert (result.batches, result.transactions) == (2, 2)
    for product_id in products:
        assert_representations_equal(engine, tenant, product_id)


def test_a_product_locked_past_the_timeout_leaves_only_itself_for_the_next_run(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    products = migrated_products(
        engine,
        tenant,
        [[media.serve(f"{p}.png", encode("PNG", 20 + p, 20))] for p in range(3)]
        + [[media.url("gone.png")]],
    )
    options = replace(FAST, batch_products=10, lock_timeout_ms=100)
    held = products[1]

    with engine.connect() as holder:  # an API request that keeps the row lock too long
        holder.execute(
            text(f"SELECT 1 FROM {tenant_schema(tenant)}.products WHERE id = :id FOR UPDATE"),
            {"id": held},
        )
        result = enrich(engine, media_settings, tenant, options)
        holder.rollback()

    # The batch was rolled back, then written product by product, the held one skipped.
    assert (result.enriched, result.failed, result.skipped) == (2, 1, 1)
    assert (result.batches, result.transactions) == (1, 3)
    assert [rows(engine, tenant, p)[0]["width"] for p in products] == [20, None, 22, None]
    assert list(failures(engine, tenant)) == [media.url("gone.png")], "recorded once"
    again = enrich(engine, media_settings, tenant, options)
    assert (again.enriched, again.failed, again.skipped, again.transactions) == (1, 0, 0, 1)
    assert rows(engine, tenant, held)[0]["width"] == 21
    for product_id in products[:3]:  # the last one was never written: nothing was read
        assert_representations_equal(engine, tenant, product_id)


def test_a_tenant_with_dual_write_off_is_skipped_without_a_request(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    product_id = migrated_product(engine, tenant, [media.serve("a.png", encode("PNG", 8, 8))])
    kill_switch = ProductImageService(
        legacy_sources=media_settings.legacy_sources,
        max_images=media_settings.max_images_per_product,
        url_bases=(media_settings.media_base_url,),
        paths=ImagePaths(lambda _tenant: Flags(dual_write=False)),
    )

    [result] = enrich_tenants(engine, kill_switch, [tenant], FAST)

    assert (result.status, result.images) == ("dual_write_off", 0)
    assert media.total_requests() == 0
    assert rows(engine, tenant, product_id)[0]["mime_type"] is None
