"""Drill: hostile input. Schemathesis (4.x) fuzzes every operation of /openapi.json against
the app served by uvicorn on loopback, with a tenant's and an operator's token: no 5xx and
no response that breaks the schema. Then explicit cases not covered in tests/api: odd ids
on every image and marketplace route, odd token subjects, oversized JSON bodies, and image
URLs aimed at loopback, private or metadata addresses, or out of the storage base."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.security import now_utc
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import TEST_SECRET, bearer
from tests.drills.support import live_server
from tests.images_db import insert_legacy_product, jsonb_elements, table_elements

BASE = "http://testserver/media"
LEGACY = [{"url": f"{BASE}/p/{k}.jpg", "order": k} for k in range(2)]
SCHEMATHESIS_SEED = 7


def schemathesis_cli() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("schemathesis is not installed (pip install 'schemathesis>=4.32,<5')")
    return found


@pytest.mark.drill
@pytest.mark.parametrize("who", ["tenant", "admin"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    settings: Settings, engine: Engine, tenant: int, tmp_path: Path, who: str
) -> None:
    cli = schemathesis_cli()
    insert_legacy_product(engine, tenant, LEGACY)
    token = bearer(tenant if who == "tenant" else None, admin=who == "admin")
    with live_server(create_app(settings, engine)) as url:
        result = subprocess.run(
            [
                cli,
                "run",
                f"{url}/openapi.json",
                "--header",
                f"Authorization: {token['Authorization']}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                "40",
                "--seed",
                str(SCHEMATHESIS_SEED),
                "--request-timeout",
                "15",  # a request that hangs is a failure, not a stuck test
                "--continue-on-failure",
                "--warnings",
                "off",
                "--report-dir",
                str(tmp_path / "schemathesis"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout


@pytest.fixture
def product(engine: Engine, tenant: int) -> int:
    return insert_legacy_product(engine, tenant, LEGACY)


ODD_IDS = ["0", "-1", "abc", str(2**63), str(2**64), "9" * 40, "1.5", "1e3", "%20", "0x10"]
NIL = "00000000-0000-4000-8000-000000000000"
IMAGE_ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "/api/products/{id}/images", None),
    ("GET", "/api/products/{id}/images/photos", None),
    ("GET", "/api/products/{id}/images/label", None),
    ("POST", "/api/products/{id}/images", {"url": f"{BASE}/x.jpg"}),
    ("PUT", "/api/products/{id}/images/order", {"image_ids": []}),
    ("PATCH", f"/api/products/{{id}}/images/{NIL}", {"alt_text": "x"}),
    ("DELETE", f"/api/products/{{id}}/images/{NIL}", None),
    ("GET", "/api/products/{id}/marketplaces/vinted", None),
    ("PATCH", "/api/products/{id}", {"title": "x"}),
    ("DELETE", "/api/products/{id}", None),
]


@pytest.mark.parametrize("product_id", ODD_IDS)
def test_odd_product_ids_on_every_route_are_4xx_never_5xx(
    client: TestClient, auth: dict[str, str], product_id: str
) -> None:
    for method, template, body in IMAGE_ROUTES:
        path = template.replace("{id}", product_id)
        response = client.request(method, path, headers=auth, json=body)
        assert response.status_code in (404, 422), (method, path, response.status_code)


@pytest.mark.parametrize("image_id", ["not-a-uuid", "0" * 100, "-1", str(2**64)])
def test_odd_image_ids_are_422(
    client: TestClient, auth: dict[str, str], product: int, image_id: str
) -> None:
    path = f"/api/products/{product}/images/{image_id}"
    assert client.delete(path, headers=auth).status_code == 422
    assert client.patch(path, json={"alt_text": "x"}, headers=auth).status_code == 422


def token_with(sub: object, secret: str = TEST_SECRET) -> dict[str, str]:
    exp = int((now_utc() + timedelta(minutes=5)).timestamp())
    return {"Authorization": f"Bearer {jwt.encode({'sub': sub, 'exp': exp}, secret, 'HS256')}"}


@pytest.mark.parametrize(
    "sub",
    [
        "-1",
        "\uff10",  # fullwidth zero
        "99999999999999999999",
        str(10**18),
        " 1",
        "1 ",
        "1.0",
        "+1",
        "1_000",
        "1; DROP SCHEMA public CASCADE",
        "",
        12,
        None,
        ["1"],
        {"id": 1},
        True,
    ],
)
def test_odd_token_subjects_are_401_or_404_and_never_reach_sql(
    client: TestClient, sub: object
) -> None:
    response = client.get("/api/products", headers=token_with(sub))
    assert response.status_code in (401, 404), (sub, response.status_code, response.text)


def test_tokens_signed_with_another_secret_or_alg_none_are_401(
    client: TestClient, tenant: int
) -> None:
    exp = int((now_utc() + timedelta(minutes=5)).timestamp())
    for token in (
        jwt.encode({"sub": str(tenant), "exp": exp}, None, "none"),
        jwt.encode({"sub": str(tenant), "exp": exp}, "x" * 40, "HS256"),
        jwt.encode({"sub": str(tenant), "exp": exp}, TEST_SECRET, "HS512"),
        jwt.encode({"sub": str(tenant), "exp": exp, "role": "admin"}, "x" * 40, "HS256"),
    ):
        response = client.get("/api/admin/tenants", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token


def test_a_tenants_token_on_another_tenants_product_is_404_on_every_route(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    owner, intruder = make_tenant(), make_tenant()
    product = insert_legacy_product(engine, owner, LEGACY)
    before = jsonb_elements(engine, owner, product)
    for method, template, body in IMAGE_ROUTES:
        path = template.replace("{id}", str(product))
        response = client.request(method, path, headers=bearer(intruder), json=body)
        assert response.status_code == 404, (method, path, response.status_code)
    assert jsonb_elements(engine, owner, product) == before
    assert table_elements(engine, owner, product) == []


def test_oversized_json_bodies_are_refused_and_change_nothing(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, product: int
) -> None:
    path = f"/api/products/{product}/images"
    huge_alt = client.post(
        path, json={"url": f"{BASE}/x.jpg", "alt_text": "a" * 5_000_000}, headers=auth
    )
    assert huge_alt.status_code in (413, 422)
    many_ids = client.put(
        f"{path}/order",
        json={"image_ids": ["00000000-0000-4000-8000-000000000000"] * 20_000},
        headers=auth,
    )
    assert many_ids.status_code in (413, 422)
    many_tags = client.post(
        path, json={"url": f"{BASE}/x.jpg", "tags": ["a"] * 100_000}, headers=auth
    )
    assert many_tags.status_code in (413, 422)
    deep = client.post(
        path,
        content=b'{"url": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        headers={**auth, "Content-Type": "application/json"},
    )
    assert deep.status_code in (400, 413, 422), deep.status_code
    title = client.post("/api/products", json={"title": "t" * 1_000_000, "price": 1}, headers=auth)
    assert title.status_code in (413, 422)
    assert table_elements(engine, tenant, product) == []
    assert jsonb_elements(engine, tenant, product) == LEGACY


def test_an_upload_with_no_file_or_two_files_is_refused(
    client: TestClient, auth: dict[str, str], product: int
) -> None:
    path = f"/api/products/{product}/images/upload"
    assert client.post(path, data={"alt_text": "x"}, headers=auth).status_code == 422
    two = client.post(
        path,
        files=[
            ("file", ("a.txt", b"not an image", "text/plain")),
            ("file", ("b.txt", b"x", "text/plain")),
        ],
        headers=auth,
    )
    assert two.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/media/a.jpg",
        "http://127.0.0.1:8000/media/a.jpg",
        "http://localhost/media/a.jpg",
        "http://[::1]/media/a.jpg",
        "http://10.0.0.5/media/a.jpg",
        "http://192.168.1.1/media/a.jpg",
        "http://169.254.169.254/latest/meta-data/iam",
        "http://0.0.0.0/media/a.jpg",
        "http://2130706433/media/a.jpg",  # 127.0.0.1 as one integer
        "http://testserver@127.0.0.1/media/a.jpg",
        "http://testserver/media@127.0.0.1/a.jpg",
        "http://testserver.127.0.0.1.nip.io/media/a.jpg",
        "http://testserver:8080/media/a.jpg",
        "https://testserver/media/a.jpg",
        "http://testserver/media",
        "http://testserver/media/",
        "http://testserver/mediaX/a.jpg",
        "http://testserver/media\\..\\secret.jpg",
        "file:///etc/passwd",
        "gopher://testserver/media/a.jpg",
    ],
)
def test_image_urls_off_the_storage_base_are_422(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, product: int, url: str
) -> None:
    response = client.post(f"/api/products/{product}/images", json={"url": url}, headers=auth)
    assert response.status_code == 422, (url, response.status_code)
    assert jsonb_elements(engine, tenant, product) == LEGACY


@pytest.mark.parametrize(
    "url",
    [
        f"{BASE}/%2e%2e/secret.jpg",
        f"{BASE}/%2E%2E/%2E%2E/etc/passwd",
        f"{BASE}/.%2e/secret.jpg",
        f"{BASE}/%2e/x.jpg",
        f"{BASE}/..%2fsecret.jpg",
        f"{BASE}/a%5c..%5csecret.jpg",
    ],
)
def test_percent_encoded_dot_segments_cannot_escape_the_storage_base(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, product: int, url: str
) -> None:
    response = client.post(f"/api/products/{product}/images", json={"url": url}, headers=auth)
    assert response.status_code == 422, (url, response.status_code)
    assert jsonb_elements(engine, tenant, product) == LEGACY


def test_the_media_route_never_serves_outside_its_folder(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    secret = settings.resolved_media_root.parent / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("secret")
    with TestClient(create_app(settings, engine)) as client:
        for path in (
            "/media/../secret.txt",
            "/media/%2e%2e/secret.txt",
            "/media/..%2fsecret.txt",
            "/media/%2e%2e%2fsecret.txt",
            "/media/.blobs",
        ):
            response = client.get(path)
            assert response.status_code in (400, 404), (path, response.status_code)
            assert "secret" not in response.text
