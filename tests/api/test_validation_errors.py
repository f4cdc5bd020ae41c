"""Every validation error is a 422 a client can read: a lone surrogate (`"\\ud800"`, valid
JSON, not encodable as UTF-8) anywhere in a body is named by field and reason, never a 500
because the 422 echoes it, and nothing changes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.conftest import bearer
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"
SURROGATE = b'"\\ud800"'  # a JSON string holding the lone surrogate U+D800, as sent on the wire

# (method, path, JSON body with {s} for the surrogate string, the field named in `loc`)
CASES = [
    ("POST", "/api/products", b'{"title": {s}, "price": 1}', ["body", "title"]),
    ("POST", "/api/products", b'{"title": "x", "price": {s}}', ["body", "price"]),
    ("PATCH", "/api/products/{product}", b'{"brand": {s}}', ["body", "brand"]),
    ("POST", "/api/products/{product}/images", b'{"url": {s}}', ["body", "url"]),
    ("PATCH", "/api/products/{product}/images/{image}", b'{"alt_text": {s}}', ["body", "alt_text"]),
    (
        "PATCH",
        "/api/products/{product}/images/{image}",
        b'{"tags": ["a", {s}]}',
        ["body", "tags", 1],
    ),
    ("PATCH", "/api/products/{product}/images/{image}", b"{{s}: 1}", ["body"]),  # the key
    (
        "PUT",
        "/api/products/{product}/images/order",
        b'{"image_ids": [{s}]}',
        ["body", "image_ids", 0],
    ),
    ("POST", "/api/admin/tenants", b'{"email": {s}}', ["body", "email"]),
    (
        "POST",
        "/api/admin/tenants",
        b'{"email": "a@example.com", "display_name": {s}}',
        ["body", "display_name"],
    ),
    ("POST", "/api/admin/backfill", b'{"tenant_ids": [{s}]}', ["body", "tenant_ids", 0]),
]


@pytest.mark.parametrize(("method", "path", "body", "loc"), CASES)
def test_a_lone_surrogate_is_a_422_naming_the_field_and_changes_nothing(
    client: TestClient,
    engine: Engine,
    tenant: int,
    method: str,
    path: str,
    body: bytes,
    loc: list[object],
) -> None:
    product = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}])
    headers = {
        **bearer(tenant, admin=path.startswith("/api/admin")),
        "Content-Type": "application/json",
    }
    images = client.get(f"/api/products/{product}/images", headers=headers).json()
    before = (client.get(f"/api/products/{product}", headers=headers).json(), images)
    tenants = client.get("/api/admin/tenants", headers=bearer(None, admin=True)).json()
    url = path.format(product=product, image=images["images"][0]["id"])

    response = client.request(method, url, content=body.replace(b"{s}", SURROGATE), headers=headers)

    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == loc and error["msg"]
    assert "\\ud800" in response.text or error["type"] != "string_unicode"
    after_images = client.get(f"/api/products/{product}/images", headers=headers).json()
    assert (client.get(f"/api/products/{product}", headers=headers).json(), after_images) == before
    assert client.get("/api/admin/tenants", headers=bearer(None, admin=True)).json() == tenants


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/api/products?after=%ED%A0%80", ["query", "after"]),
        ("/api/products/%ED%A0%80", ["path", "product_id"]),
    ],
)
def test_a_query_or_path_value_that_is_not_utf8_is_a_422_naming_the_parameter(
    client: TestClient, tenant: int, path: str, loc: list[str]
) -> None:
    # Percent-encoded surrogate bytes: decoded with replacement characters, never a surrogate.
    response = client.get(path, headers=bearer(tenant))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
