"""The products API: CRUD, keyset pagination, bad input and tenant isolation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.core.security import issue_token, now_utc
from tests.conftest import TEST_SECRET, bearer

PRODUCT = {"title": "Levi's 501 jeans W32", "price": "35.00", "brand": "Levi's"}


def product_count(engine: Engine, tenant_id: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f'SELECT count(*) FROM "{tenant_schema(tenant_id)}".products')
            ).scalar_one()
        )


def test_create_read_update_delete_a_product(client: TestClient, auth: dict[str, str]) -> None:
    created = client.post("/api/products", json=PRODUCT, headers=auth)
    assert created.status_code == 201, created.text
    product = created.json()
    assert product["title"] == PRODUCT["title"]
    assert product["source"] == "stoflow"

    path = f"/api/products/{product['id']}"
    assert client.get(path, headers=auth).json()["brand"] == "Levi's"

    patched = client.patch(path, json={"price": "29.90", "status": "active"}, headers=auth)
    assert patched.status_code == 200, patched.text
    assert patched.json()["price"] == "29.90"
    assert patched.json()["status"] == "active"
    assert patched.json()["title"] == PRODUCT["title"]

    assert client.delete(path, headers=auth).status_code == 204
    assert client.get(path, headers=auth).status_code == 404


def test_keyset_pagination_walks_every_product_once(
    client: TestClient, auth: dict[str, str]
) -> None:
    ids = [
        client.post("/api/products", json={**PRODUCT, "title": f"item {i}"}, headers=auth).json()[
            "id"
        ]
        for i in range(7)
    ]
    seen: list[int] = []
    after: int | None = None
    while True:
        params = {"limit": 3} | ({"after": after} if after is not None else {})
        page = client.get("/api/products", params=params, headers=auth).json()
        seen += [item["id"] for item in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(ids)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PRODUCT, "colour": "blue"}, "colour"),
        ({**PRODUCT, "price": "-1"}, "price"),
        ({**PRODUCT, "price": "abc"}, "price"),
        ({**PRODUCT, "price": "1.234"}, "price"),
        ({**PRODUCT, "title": "x" * 201}, "title"),
        ({**PRODUCT, "title": ""}, "title"),
        ({**PRODUCT, "description": "d" * 10_001}, "description"),
        ({**PRODUCT, "currency": "euro"}, "currency"),
        ({**PRODUCT, "status": "lost"}, "status"),
        ({**PRODUCT, "title": 12}, "title"),
        ({**PRODUCT, "title": "nul \x00"}, "title"),
        ({**PRODUCT, "brand": "\x00"}, "brand"),
        ({"price": "1.00"}, "title"),
    ],
)
def test_bad_product_input_is_a_422_naming_the_field_and_writes_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, body: dict, field: str
) -> None:
    response = client.post("/api/products", json=body, headers=auth)
    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}
    assert product_count(engine, tenant) == 0


def test_patch_refuses_null_for_a_required_field(client: TestClient, auth: dict[str, str]) -> None:
    product = client.post("/api/products", json=PRODUCT, headers=auth).json()
    response = client.patch(f"/api/products/{product['id']}", json={"title": None}, headers=auth)
    assert response.status_code == 422
    assert "title" in response.text
    assert (
        client.get(f"/api/products/{product['id']}", headers=auth).json()["title"]
        == PRODUCT["title"]
    )


@pytest.mark.parametrize("product_id", ["0", "-1", "abc", str(2**64), "1.5"])
def test_odd_product_ids_are_422_not_500(
    client: TestClient, auth: dict[str, str], product_id: str
) -> None:
    assert client.get(f"/api/products/{product_id}", headers=auth).status_code == 422


def test_another_tenants_product_is_a_404_for_every_verb(
    client: TestClient, make_tenant: Callable[[], int], engine: Engine
) -> None:
    owner, intruder = make_tenant(), make_tenant()
    product = client.post("/api/products", json=PRODUCT, headers=bearer(owner)).json()
    path = f"/api/products/{product['id']}"
    other = bearer(intruder)

    assert client.get(path, headers=other).status_code == 404
    assert client.patch(path, json={"title": "mine"}, headers=other).status_code == 404
    assert client.delete(path, headers=other).status_code == 404
    assert client.get("/api/products", headers=other).json()["items"] == []
    assert client.get(path, headers=bearer(owner)).json()["title"] == PRODUCT["title"]
    assert product_count(engine, owner) == 1


def test_missing_expired_forged_and_alg_none_tokens_get_401(
    client: TestClient, tenant: int
) -> None:
    now = now_utc()
    expired = issue_token(
        TEST_SECRET, user_id=tenant, ttl=timedelta(seconds=-10), now=now - timedelta(hours=1)
    )
    forged = issue_token(
        "another-secret-0123456789-0123456789", user_id=tenant, ttl=timedelta(hours=1), now=now
    )
    unsigned = jwt.encode({"sub": str(tenant), "exp": int(now.timestamp()) + 60}, None, "none")
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {unsigned}"},
        {"Authorization": "Bearer not.a.token"},
    ):
        response = client.get("/api/products", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_tenant_is_a_404_and_odd_subjects_are_401(client: TestClient) -> None:
    assert client.get("/api/products", headers=bearer(10**17)).status_code == 404
    now = int(now_utc().timestamp())
    for sub in ("0", "-3", "1; DROP SCHEMA public", "user_1", "\uff11\uff12"):
        token = jwt.encode({"sub": sub, "exp": now + 60}, TEST_SECRET, "HS256")
        response = client.get("/api/products", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, sub


def test_admin_only_token_cannot_read_tenant_data(client: TestClient) -> None:
    response = client.get("/api/products", headers=bearer(None, admin=True))
    assert response.status_code == 403


def test_tenant_token_cannot_use_admin_endpoints(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/api/admin/tenants", headers=auth).status_code == 403
    body = {"email": "new@example.com"}
    assert client.post("/api/admin/tenants", json=body, headers=auth).status_code == 403


def test_admin_creates_a_tenant_whose_schema_is_migrated(
    client: TestClient, engine: Engine
) -> None:
    admin = bearer(None, admin=True)
    email = f"shop-{now_utc().timestamp()}@example.com"
    created = client.post("/api/admin/tenants", json={"email": email}, headers=admin)
    assert created.status_code == 201, created.text
    tenant_id = created.json()["id"]
    assert created.json()["schema_name"] == f"user_{tenant_id}"
    assert product_count(engine, tenant_id) == 0
    duplicate = client.post("/api/admin/tenants", json={"email": email}, headers=admin)
    assert duplicate.status_code == 409
    assert (
        client.post("/api/admin/tenants", json={"email": "nope"}, headers=admin).status_code == 422
    )


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_every_response_carries_a_request_id(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/api/products", headers={**auth, "X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
