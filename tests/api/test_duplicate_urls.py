"""Repeated URLs never change an image's id: the ids the API shows on the JSONB path are
the ids the table holds, whatever the history (issue 18, case 1)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.conftest import bearer
from tests.images_db import assert_representations_equal, insert_legacy_product

BASE = "http://testserver/media"


def _migrated(engine: Engine, make_tenant: Callable[[], int], urls: list[str]) -> tuple[int, int]:
    tenant = make_tenant()
    legacy = [{"url": f"{BASE}/{name}.jpg", "order": i} for i, name in enumerate(urls)]
    product = insert_legacy_product(engine, tenant, legacy, source="shopify")
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    return tenant, product


def _ids(client: TestClient, tenant: int, product: int) -> list[str]:
    response = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
    assert response.status_code == 200
    assert response.headers["x-images-read-path"] == "jsonb"
    return [image["id"] for image in response.json()["images"]]


def test_adding_the_url_of_image_zero_at_position_zero_keeps_every_id(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = _migrated(engine, make_tenant, ["a", "b", "c"])
    before = _ids(client, tenant, product)
    added = client.post(
        f"/api/products/{product}/images",
        json={"url": f"{BASE}/a.jpg", "position": 0},
        headers=bearer(tenant),
    )
    assert added.status_code == 201
    after = _ids(client, tenant, product)
    assert after == [added.json()["id"], *before]
    assert_representations_equal(engine, tenant, product)
    assert verify_tenant(engine, tenant).is_verified
    # every id the GET shows can be used at once
    reordered = client.put(
        f"/api/products/{product}/images/order",
        json={"image_ids": list(reversed(after))},
        headers=bearer(tenant),
    )
    assert reordered.status_code == 200, reordered.text
    for image_id in after:
        patched = client.patch(
            f"/api/products/{product}/images/{image_id}",
            json={"alt_text": "seen"},
            headers=bearer(tenant),
        )
        assert patched.status_code == 200, patched.text
    assert verify_tenant(engine, tenant).is_verified


def test_swapping_two_images_that_share_a_legacy_url_keeps_their_ids(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = _migrated(engine, make_tenant, ["same", "same", "other"])
    first, second, third = _ids(client, tenant, product)
    swapped = client.put(
        f"/api/products/{product}/images/order",
        json={"image_ids": [second, first, third]},
        headers=bearer(tenant),
    )
    assert swapped.status_code == 200, swapped.text
    assert _ids(client, tenant, product) == [second, first, third]
    assert_representations_equal(engine, tenant, product)
    assert verify_tenant(engine, tenant).is_verified
    deleted = client.delete(f"/api/products/{product}/images/{first}", headers=bearer(tenant))
    assert deleted.status_code == 204
    assert _ids(client, tenant, product) == [second, third]
    assert verify_tenant(engine, tenant).is_verified
