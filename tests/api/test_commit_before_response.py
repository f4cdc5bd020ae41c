"""A write is committed before its response leaves: a client that reads right after a 2xx
sees its write (FastAPI runs a yield dependency's exit code after the response by default;
the API's unit of work opts out). Checked on a real server on loopback, where the response
can overtake the commit."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from tests.conftest import bearer
from tests.console.browser import live_server
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"


def test_every_read_after_a_write_sees_that_write(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}])
    with live_server(create_app(settings, engine)) as url, httpx.Client(base_url=url) as client:
        stale = []
        for n in range(60):
            added = client.post(
                f"/api/products/{product}/images",
                json={"url": f"{BASE}/n{n}.jpg"},
                headers=bearer(tenant),
            )
            assert added.status_code == 201, added.text
            listed = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
            ids = {image["id"] for image in listed.json()["images"]}
            if added.json()["id"] not in ids:
                stale.append(n)
            client.delete(
                f"/api/products/{product}/images/{added.json()['id']}", headers=bearer(tenant)
            )
    assert stale == [], f"reads that missed the write just acknowledged: {stale}"
