"""Marketplace payloads through the API on both read paths: on JSONB reads a legacy
product's label is still in every payload (the bug as it is today); on table reads it is
gone, for Vinted, eBay and Etsy at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.api.test_read_switch import BASE, migrated_tenant
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product

MARKETPLACES = ("vinted", "ebay", "etsy")
LABEL_URL = f"{BASE}/label.jpg"


def urls_in(payload: dict[str, object]) -> str:
    return repr(payload)


@pytest.fixture
def app_with(settings: Settings, engine: Engine, tmp_path: Path) -> Callable[..., TestClient]:
    def build(read_table: list[int], *, allow_http: bool = True) -> TestClient:
        toggles = tmp_path / "toggles.json"
        write_toggles(toggles, [str(t) for t in read_table])
        changed = settings.model_copy(
            update={"flags_file": toggles, "marketplace_allow_http": allow_http}
        )
        return TestClient(create_app(changed, engine))

    return build


def test_the_label_leaks_on_jsonb_reads_and_is_gone_on_table_reads(
    engine: Engine, make_tenant: Callable[[], int], app_with: Callable[..., TestClient]
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    with app_with([]) as client:
        for marketplace in MARKETPLACES:
            response = client.get(
                f"/api/products/{product}/marketplaces/{marketplace}", headers=bearer(tenant)
            )
            assert response.status_code == 200, response.text
            assert response.headers["x-images-read-path"] == "jsonb"
            assert LABEL_URL in urls_in(response.json()["payload"]), "the bug as it is today"
    with app_with([tenant]) as client:
        for marketplace in MARKETPLACES:
            response = client.get(
                f"/api/products/{product}/marketplaces/{marketplace}", headers=bearer(tenant)
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert response.headers["x-images-read-path"] == "table"
            assert LABEL_URL not in urls_in(body["payload"])
            assert [e["url"] for e in body["excluded"]] == [LABEL_URL]
            assert "label" in body["excluded"][0]["reason"]
        vinted = client.get(
            f"/api/products/{product}/marketplaces/vinted", headers=bearer(tenant)
        ).json()["payload"]
        assert vinted["cover_photo_url"] == f"{BASE}/a.jpg"
        assert [p["url"] for p in vinted["photos"]] == [f"{BASE}/a.jpg", f"{BASE}/b.jpg"]
        ebay = client.get(
            f"/api/products/{product}/marketplaces/ebay", headers=bearer(tenant)
        ).json()["payload"]
        assert ebay["product"]["imageUrls"] == [f"{BASE}/a.jpg", f"{BASE}/b.jpg"]
        etsy = client.get(
            f"/api/products/{product}/marketplaces/etsy", headers=bearer(tenant)
        ).json()["payload"]
        assert [(i["url"], i["rank"]) for i in etsy["images"]] == [
            (f"{BASE}/a.jpg", 1),
            (f"{BASE}/b.jpg", 2),
        ]


def test_a_product_with_nothing_publishable_is_a_409_naming_why(
    engine: Engine, make_tenant: Callable[[], int], app_with: Callable[..., TestClient]
) -> None:
    tenant = make_tenant()
    only_label = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg", "is_label": True}])
    photo = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/b.jpg"}])
    empty = insert_legacy_product(engine, tenant, [])
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    with app_with([tenant]) as client:
        refused = client.get(
            f"/api/products/{only_label}/marketplaces/ebay", headers=bearer(tenant)
        )
        assert refused.status_code == 409
        assert refused.json()["field"] == "images"
        assert "label" in refused.json()["detail"]
        assert refused.json()["excluded"][0]["url"] == f"{BASE}/a.jpg"
        nothing = client.get(f"/api/products/{empty}/marketplaces/vinted", headers=bearer(tenant))
        assert nothing.status_code == 409 and "no image" in nothing.json()["detail"]
    with app_with([tenant], allow_http=False) as client:
        http_only = client.get(f"/api/products/{photo}/marketplaces/etsy", headers=bearer(tenant))
        assert http_only.status_code == 409 and "not https" in http_only.json()["detail"]


def test_unknown_marketplace_and_another_tenants_product_are_refused(
    engine: Engine, make_tenant: Callable[[], int], app_with: Callable[..., TestClient]
) -> None:
    owner, product = migrated_tenant(engine, make_tenant, verify=True)
    stranger = make_tenant()
    with app_with([]) as client:
        unknown = client.get(f"/api/products/{product}/marketplaces/amazon", headers=bearer(owner))
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["loc"][-1] == "marketplace"
        other = client.get(f"/api/products/{product}/marketplaces/vinted", headers=bearer(stranger))
        assert other.status_code == 404
