"""The dual-write kill switch loses nothing (issue 18, case 3): a write served with the
dual-write off rewrites the JSONB without the elements that cannot be images, so each is
recorded in the rejection report first, and the write is logged as drift."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.core.settings import Settings
from app.main import create_app
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product, jsonb_elements

BASE = "http://testserver/media"
DIRTY = [
    {"url": f"{BASE}/a.jpg", "order": 0},
    {"order": 1, "note": "no url here"},
    "a bare string",
    {"url": "  ", "order": 3},
    {"url": f"{BASE}/b.jpg", "order": 4},
]


def dual_write_off(settings: Settings, tmp_path: Path) -> Settings:
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [])
    definitions = json.loads(toggles.read_text())
    for feature in definitions["features"]:
        if feature["name"] == "product-images.dual-write":
            feature["enabled"] = False
    toggles.write_text(json.dumps(definitions))
    return settings.model_copy(update={"flags_file": toggles})


def rejected(engine: Engine, tenant: int, product: int) -> list[tuple[object, str]]:
    with engine.connect() as connection:
        return [
            (row.raw, row.reason)
            for row in connection.execute(
                text(
                    f"SELECT raw, reason FROM {tenant_schema(tenant)}.rejected_image_elements "
                    "WHERE product_id = :id ORDER BY position"
                ),
                {"id": product},
            )
        ]


def test_a_kill_switch_write_records_every_element_that_is_not_an_image(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, DIRTY, source="shopify")
    untouched = insert_legacy_product(engine, tenant, DIRTY, source="shopify")
    run_tenant(engine, tenant, RunOptions())
    # The backfill reported the first product's rejections: forget them, as if the product
    # had been created after the backfill by a writer outside the service.
    with engine.begin() as connection:
        connection.execute(text(f"DELETE FROM {tenant_schema(tenant)}.rejected_image_elements"))
    with TestClient(create_app(dual_write_off(settings, tmp_path), engine)) as client:
        added = client.post(
            f"/api/products/{product}/images",
            json={"url": f"{BASE}/new.jpg"},
            headers=bearer(tenant),
        )
    assert added.status_code == 201, added.text
    assert [e["url"] for e in jsonb_elements(engine, tenant, product)] == [
        f"{BASE}/a.jpg",
        f"{BASE}/b.jpg",
        f"{BASE}/new.jpg",
    ]
    assert rejected(engine, tenant, product) == [
        ({"order": 1, "note": "no url here"}, "missing_url"),
        ("a bare string", "not_an_object"),
        ({"url": "  ", "order": 3}, "empty_url"),
    ]
    assert rejected(engine, tenant, untouched) == []
    # Every element is a row or a recorded rejection again once the rows are back.
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified


def test_a_new_element_rejected_where_an_old_one_was_is_kept_too(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, DIRTY[:2], source="shopify")
    run_tenant(engine, tenant, RunOptions())
    # A writer outside the service puts another broken element at the same position.
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE {tenant_schema(tenant)}.products SET images = :v WHERE id = :id"),
            {"v": json.dumps([DIRTY[0], "another bare string"]), "id": product},
        )
    with TestClient(create_app(dual_write_off(settings, tmp_path), engine)) as client:
        added = client.post(
            f"/api/products/{product}/images",
            json={"url": f"{BASE}/new.jpg"},
            headers=bearer(tenant),
        )
    assert added.status_code == 201, added.text
    assert sorted(rejected(engine, tenant, product), key=str) == sorted(
        [
            ({"order": 1, "note": "no url here"}, "missing_url"),
            ("another bare string", "not_an_object"),
        ],
        key=str,
    )
