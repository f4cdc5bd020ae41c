"""Request bodies are bounded per route before they are read (issue 19, item 1): a declared
length over the limit is a 413 and a body without a valid token a 401, both with no body byte
read; a body sent in chunks is cut off at the limit. The drill measures the same against a
served process (tests/drills/test_body_limits_drill.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.api.body_limits import UPLOAD_ENVELOPE_BYTES
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import bearer
from tests.images_db import insert_legacy_product, jsonb_elements, table_elements

BASE = "http://testserver/media"
LEGACY = [{"url": f"{BASE}/p/0.jpg", "order": 0}]


@pytest.fixture
def app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings, engine)


@pytest.fixture
def product(engine: Engine, tenant: int) -> int:
    return insert_legacy_product(engine, tenant, LEGACY)


def call(
    app: FastAPI, method: str, path: str, headers: dict[str, str], body_chunks: list[bytes]
) -> tuple[int, dict[str, object], int]:
    """Send one request straight to the ASGI app; return status, JSON body and how many body
    chunks the app pulled (0: it never read the body)."""
    pulled = 0
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal pulled
        if pulled >= len(body_chunks):
            await anyio.sleep_forever()
        pulled += 1
        return {
            "type": "http.request",
            "body": body_chunks[pulled - 1],
            "more_body": pulled < len(body_chunks),
        }

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)  # type: ignore[arg-type]

    anyio.run(run)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")  # type: ignore[misc]
    return int(start["status"]), json.loads(body), pulled  # type: ignore[call-overload]


HUGE = str(200 * 1024 * 1024)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/products/{p}/images/upload", "multipart/form-data; boundary=x"),
        ("/api/products/{p}/images", "application/json"),
        ("/api/admin/migration/backfill", "application/json"),
    ],
)
def test_a_body_without_a_valid_token_is_refused_before_one_byte_is_read(
    app: FastAPI, product: int, path: str, content_type: str
) -> None:
    url = path.format(p=product)
    for authorization in (None, "Bearer forged.token.value", "Basic dXNlcjpwdw=="):
        headers = {"content-type": content_type, "content-length": HUGE}
        if authorization:
            headers["authorization"] = authorization
        status, body, pulled = call(app, "POST", url, headers, [b"x" * 1024] * 3)
        assert status == 401, body
        assert pulled == 0
        assert "token" in str(body["detail"])


@pytest.mark.parametrize(
    ("path", "field"),
    [("/api/products/{p}/images/upload", "file"), ("/api/products/{p}/images", "body")],
)
def test_a_declared_length_over_the_limit_is_a_413_before_one_byte_is_read(
    app: FastAPI, tenant: int, product: int, path: str, field: str
) -> None:
    headers = {**bearer(tenant), "content-type": "application/json", "content-length": HUGE}
    status, body, pulled = call(app, "POST", path.format(p=product), headers, [b"{}"])
    assert status == 413
    assert pulled == 0
    error = body["detail"][0]  # type: ignore[index]
    assert error["loc"] == ["body", field]
    assert error["type"] == "too_large"
    assert "bytes" in error["msg"]


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


def test_a_chunked_json_body_is_cut_off_at_the_limit_and_changes_nothing(
    client: TestClient, settings: Settings, engine: Engine, tenant: int, product: int
) -> None:
    # No Content-Length: the body arrives in chunks; whitespace is valid JSON padding, so
    # only the count stops it.
    padding = chunks(settings.max_json_body_bytes + 1)
    body = iter([b'{"url": "' + BASE.encode() + b'/x.jpg"', *padding, b"}"])
    response = client.post(
        f"/api/products/{product}/images",
        content=body,
        headers={**bearer(tenant), "content-type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "body"]
    assert jsonb_elements(engine, tenant, product) == LEGACY
    assert table_elements(engine, tenant, product) == []


def test_a_json_body_under_the_limit_is_served(
    client: TestClient, settings: Settings, engine: Engine, tenant: int, product: int
) -> None:
    # Just under the limit, padded with whitespace: the route reads and serves it.
    head = json.dumps({"url": f"{BASE}/x.jpg"}).encode()
    padded = head[:-1] + b" " * (settings.max_json_body_bytes - len(head)) + b"}"
    assert len(padded) == settings.max_json_body_bytes
    response = client.post(
        f"/api/products/{product}/images",
        content=padded,
        headers={**bearer(tenant), "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert [e["url"] for e in jsonb_elements(engine, tenant, product)][-1] == f"{BASE}/x.jpg"


def test_an_upload_may_carry_the_whole_file_limit_plus_its_envelope(
    settings: Settings, engine: Engine, tenant: int, product: int
) -> None:
    tight = settings.model_copy(update={"max_upload_bytes": 100_000})
    with TestClient(create_app(tight, engine)) as client:
        url = f"/api/products/{product}/images/upload"
        # At the file limit: past the middleware, refused by the file check (not an image).
        at_limit = client.post(
            url, files={"file": ("a.jpg", b"x" * 100_000, "image/jpeg")}, headers=bearer(tenant)
        )
        assert at_limit.status_code == 422
        assert at_limit.json()["detail"][0]["type"] == "not_an_image"
        over = client.post(
            url,
            files={"file": ("a.jpg", b"x" * (100_000 + UPLOAD_ENVELOPE_BYTES), "image/jpeg")},
            headers=bearer(tenant),
        )
        assert over.status_code == 413
        assert over.json()["detail"][0]["loc"] == ["body", "file"]
    assert jsonb_elements(engine, tenant, product) == LEGACY


def test_the_console_forms_take_the_form_limit(client: TestClient, settings: Settings) -> None:
    response = client.post(
        "/console/login",
        data={"token": "x" * (settings.max_form_body_bytes + 1)},
        follow_redirects=False,
    )
    assert response.status_code == 413


def test_a_request_without_a_body_still_gets_the_routes_own_answer(
    client: TestClient, product: int
) -> None:
    # Nothing to bound: the route's dependencies answer as before (401 from the API).
    response = client.delete(f"/api/products/{product}/images/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 401
    assert response.json()["detail"] == "missing bearer token"
    assert response.headers["www-authenticate"] == "Bearer"
