"""One incompressible legacy tag over the GIN index's ~8 KB entry limit stops nothing
(issue 18, case 4): history keeps the first 200 characters of a tag, on the backfill's SQL
path and the dual-write's Python path alike."""

from __future__ import annotations

import random
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.images.normalise import MAX_HISTORY_TAG_LENGTH
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.conftest import bearer
from tests.images_db import assert_representations_equal, insert_legacy_product, table_elements

BASE = "http://testserver/media"


def incompressible(length: int) -> str:
    """Random text from a large alphabet: pglz cannot shrink it under the limit."""
    chosen = random.Random(length)
    return "".join(chr(chosen.randrange(0x4E00, 0x9FFF)) for _ in range(length))


HUGE = incompressible(9_000)


def test_a_huge_legacy_tag_is_cut_and_the_backfill_goes_on(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    huge = insert_legacy_product(
        engine, tenant, [{"url": f"{BASE}/a.jpg", "tags": ["ok", HUGE]}], source="shopify"
    )
    after = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/b.jpg"}], source="shopify")
    result = run_tenant(engine, tenant, RunOptions())
    assert result.status == "done"
    assert table_elements(engine, tenant, huge)[0]["tags"] == ["ok", HUGE[:MAX_HISTORY_TAG_LENGTH]]
    assert len(table_elements(engine, tenant, after)) == 1
    assert verify_tenant(engine, tenant).is_verified


def test_the_first_dual_write_of_a_product_with_a_huge_tag_is_no_500(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(
        engine, tenant, [{"url": f"{BASE}/a.jpg", "tags": [HUGE]}], source="shopify"
    )
    listed = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
    image_id = listed.json()["images"][0]["id"]
    patched = client.patch(
        f"/api/products/{product}/images/{image_id}",
        json={"alt_text": "front"},
        headers=bearer(tenant),
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tags"] == [HUGE[:MAX_HISTORY_TAG_LENGTH]]
    assert_representations_equal(engine, tenant, product)
