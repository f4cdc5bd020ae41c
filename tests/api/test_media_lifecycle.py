"""Stored objects over HTTP: a deleted image's object goes once nothing references it, a
tenant cannot attach another's objects, uploads stay within the tenant's quota."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PillowImage
from sqlalchemy import Engine

from app.core.database import unit_of_work
from app.core.settings import Settings
from app.main import create_app
from app.repositories import stored_media
from app.services.tenant_service import create_tenant
from app.storage.base import StorageUnavailable
from tests.conftest import bearer
from tests.images_db import jsonb_elements, table_elements
from tests.services.test_media_gc import backup

BASE = "http://testserver/media"


def picture(shade: int = 0) -> bytes:
    """A small PNG; each shade is different bytes (no shared blob on disk)."""
    buffer = io.BytesIO()
    PillowImage.new("RGB", (64, 48), (shade % 256, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def new_product(client: TestClient, auth: dict[str, str]) -> int:
    created = client.post("/api/products", json={"title": "Shoe", "price": "10"}, headers=auth)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def upload(
    client: TestClient, auth: dict[str, str], product: int, shade: int = 0
) -> dict[str, Any]:
    response = client.post(
        f"/api/products/{product}/images/upload",
        files={"file": ("a.png", picture(shade), "image/png")},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def attach(client: TestClient, auth: dict[str, str], product: int, url: str) -> Any:
    return client.post(f"/api/products/{product}/images", json={"url": url}, headers=auth)


def delete_image(client: TestClient, auth: dict[str, str], product: int, image: Any) -> None:
    response = client.delete(f"/api/products/{product}/images/{image['id']}", headers=auth)
    assert response.status_code == 204, response.text


def key_of(image: dict[str, Any]) -> str:
    return str(image["url"]).removeprefix(f"{BASE}/")


def stored_keys(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {
        p.relative_to(root).as_posix() for p in root.glob(".blobs/*")
    }


def stored_bytes(root: Path) -> int:
    """Every byte on disk under the media folder, blobs included."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def usage(engine: Engine, tenant: int) -> int:
    with unit_of_work(engine, tenant) as session:
        return stored_media.usage(session)


@pytest.fixture
def root(settings: Settings) -> Path:
    return settings.resolved_media_root


# --- removal after the transaction ------------------------------------------------------


def test_deleting_an_uploaded_image_removes_its_object_and_gives_its_bytes_back(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, root: Path
) -> None:
    product = new_product(client, auth)
    image = upload(client, auth, product)
    assert key_of(image) in stored_keys(root)
    assert usage(engine, tenant) == image["file_size"]

    delete_image(client, auth, product, image)

    assert stored_keys(root) == set()
    assert usage(engine, tenant) == 0
    assert client.get(image["url"].removeprefix("http://testserver")).status_code == 404


def test_an_object_shared_by_two_images_goes_with_the_last_of_them(
    client: TestClient, auth: dict[str, str], root: Path
) -> None:
    first, second = new_product(client, auth), new_product(client, auth)
    uploaded = upload(client, auth, first)
    shared = attach(client, auth, second, uploaded["url"])
    assert shared.status_code == 201, shared.text

    delete_image(client, auth, first, uploaded)
    assert key_of(uploaded) in stored_keys(root), "the second product still shows it"

    delete_image(client, auth, second, shared.json())
    assert stored_keys(root) == set()


def test_deleting_a_product_removes_the_objects_only_it_referenced(
    client: TestClient, auth: dict[str, str], root: Path
) -> None:
    keeper, doomed = new_product(client, auth), new_product(client, auth)
    kept = upload(client, auth, keeper, shade=1)
    assert attach(client, auth, doomed, kept["url"]).status_code == 201
    own = upload(client, auth, doomed, shade=2)

    assert client.delete(f"/api/products/{doomed}", headers=auth).status_code == 204

    assert stored_keys(root) == {key_of(kept)}
    assert client.delete(f"/api/products/{keeper}", headers=auth).status_code == 204
    assert stored_keys(root) == set()
    assert key_of(own) not in stored_keys(root)


def test_an_object_referenced_only_by_a_backup_is_kept(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, root: Path
) -> None:
    product = new_product(client, auth)
    image = upload(client, auth, product)
    backup(engine, tenant, product, jsonb_elements(engine, tenant, product))  # a restore point

    delete_image(client, auth, product, image)

    assert stored_keys(root) == {key_of(image)}, "a restore would bring the image back"


def test_a_contracted_tenant_loses_an_object_with_the_last_image_showing_it(
    client: TestClient, engine: Engine, root: Path
) -> None:
    tenant = create_tenant(engine, email=f"c-{uuid.uuid4().hex}@example.com", contract=True).id
    auth = bearer(tenant)
    first, second = new_product(client, auth), new_product(client, auth)
    uploaded = upload(client, auth, first)
    shared = attach(client, auth, second, uploaded["url"])
    assert shared.status_code == 201, shared.text

    assert client.delete(f"/api/products/{first}", headers=auth).status_code == 204
    assert stored_keys(root) == {key_of(uploaded)}, "the table alone still shows it"
    delete_image(client, auth, second, shared.json())
    assert stored_keys(root) == set()


def test_a_storage_failure_after_the_delete_is_logged_and_left_to_the_sweep(
    client: TestClient,
    auth: dict[str, str],
    tenant: int,
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    product = new_product(client, auth)
    image = upload(client, auth, product)
    storage = client.app.state.services.storage  # type: ignore[attr-defined]

    def disk_gone(key: str) -> None:
        raise StorageUnavailable(f"local storage cannot delete {key!r}: read-only file system")

    monkeypatch.setattr(storage, "delete", disk_gone)
    caplog.set_level(logging.ERROR)

    response = client.delete(f"/api/products/{product}/images/{image['id']}", headers=auth)

    assert response.status_code == 204
    assert client.get(f"/api/products/{product}/images", headers=auth).json()["images"] == []
    assert key_of(image) in stored_keys(root)
    failures = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == "media.removal_failed"
    ]
    assert failures, "the failure must be logged"
    assert failures[0]["tenant"] == tenant
    assert failures[0]["key"] == key_of(image)


def test_an_upload_delete_loop_leaves_the_storage_no_bigger(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, root: Path
) -> None:
    product = new_product(client, auth)
    keep = upload(client, auth, product, shade=255)  # something was there before the loop
    before = stored_bytes(root)

    for shade in range(12):
        delete_image(client, auth, product, upload(client, auth, product, shade))

    assert stored_bytes(root) == before
    assert stored_keys(root) == {key_of(keep)}
    assert usage(engine, tenant) == keep["file_size"]


# --- attaching URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "{url}",
        "{url}?v=2",
        "{upper}",
        "{doubled}",
        "{escaped}",
    ],
)
def test_another_tenants_uploaded_url_is_refused_and_changes_nothing(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int], spelling: str
) -> None:
    owner, intruder = make_tenant(), make_tenant()
    owners_image = upload(client, bearer(owner), new_product(client, bearer(owner)))
    target = new_product(client, bearer(intruder))
    url = owners_image["url"]
    key = key_of(owners_image)
    spelled = spelling.format(
        url=url,
        upper=url.replace("http://testserver", "HTTP://TESTSERVER"),
        doubled=f"{BASE}//{key}",
        escaped=f"{BASE}/%74{key[1:]}",
    )

    response = attach(client, bearer(intruder), target, spelled)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "url"]
    assert detail["type"] == "ForeignStoredObject"
    assert "another tenant" in detail["msg"]
    assert jsonb_elements(engine, intruder, target) == []
    assert table_elements(engine, intruder, target) == []


def test_a_url_of_a_stored_object_that_does_not_exist_is_refused(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int
) -> None:
    product = new_product(client, auth)
    gone = upload(client, auth, product)
    delete_image(client, auth, product, gone)

    for url in (gone["url"], f"{BASE}/t{tenant}/p{product}/never-uploaded.png"):
        response = attach(client, auth, product, url)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert (detail["loc"], detail["type"]) == (["body", "url"], "MissingStoredObject")
        assert "no stored object" in detail["msg"]
    assert jsonb_elements(engine, tenant, product) == []


def test_an_own_object_must_be_attached_as_its_upload_spelled_it(
    client: TestClient, auth: dict[str, str], tenant: int
) -> None:
    product = new_product(client, auth)
    image = upload(client, auth, product)
    escaped = f"{BASE}/%74{key_of(image)[1:]}"  # %74 is "t": the same object, hidden

    response = attach(client, auth, product, escaped)

    assert response.status_code == 422
    assert image["url"] in response.json()["detail"][0]["msg"]
    assert attach(client, auth, product, f"{image['url']}?v=2").status_code == 201


def test_legacy_urls_outside_tenant_prefixes_are_still_attached_without_a_stored_object(
    client: TestClient, auth: dict[str, str]
) -> None:
    product = new_product(client, auth)
    for url in (f"{BASE}/legacy/a.jpg", f"{BASE}/seed42/t1/p1/0.jpg"):
        assert attach(client, auth, product, url).status_code == 201


# --- the quota --------------------------------------------------------------------------


@pytest.fixture
def quota_client(settings: Settings, engine: Engine) -> Iterator[Callable[[int], TestClient]]:
    """An app whose per-tenant quota is given in bytes."""
    clients: list[TestClient] = []

    def make(quota: int) -> TestClient:
        app = create_app(
            settings.model_copy(update={"media_quota_bytes_per_tenant": quota}), engine
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_an_upload_past_the_quota_is_413_and_stores_nothing(
    quota_client: Callable[[int], TestClient],
    auth: dict[str, str],
    engine: Engine,
    tenant: int,
    root: Path,
) -> None:
    size = len(picture(1))
    client = quota_client(size + len(picture(2)) - 1)
    product = new_product(client, auth)
    first = upload(client, auth, product, shade=1)

    refused = client.post(
        f"/api/products/{product}/images/upload",
        files={"file": ("b.png", picture(2), "image/png")},
        headers=auth,
    )

    assert refused.status_code == 413, refused.text
    detail = refused.json()["detail"][0]
    assert (detail["loc"], detail["type"]) == (["body", "file"], "quota_exceeded")
    quota = client.app.state.services.settings.media_quota_bytes_per_tenant  # type: ignore[attr-defined]
    assert f"take {size} bytes of the {quota}" in detail["msg"]
    assert stored_keys(root) == {key_of(first)}
    assert usage(engine, tenant) == size
    assert len(client.get(f"/api/products/{product}/images", headers=auth).json()["images"]) == 1


def test_concurrent_uploads_cannot_pass_the_quota(
    quota_client: Callable[[int], TestClient],
    auth: dict[str, str],
    engine: Engine,
    tenant: int,
    root: Path,
) -> None:
    size = len(picture())
    client = quota_client(3 * size)
    product = new_product(client, auth)

    def send(_: int) -> int:
        return client.post(
            f"/api/products/{product}/images/upload",
            files={"file": ("a.png", picture(), "image/png")},
            headers=auth,
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))

    assert statuses == [201] * 3 + [413] * 5
    assert len(stored_keys(root)) == 3
    assert usage(engine, tenant) == 3 * size


def test_a_refused_upload_gives_its_reservation_back(
    quota_client: Callable[[int], TestClient],
    auth: dict[str, str],
    engine: Engine,
    tenant: int,
    root: Path,
) -> None:
    client = quota_client(10 * 1024 * 1024)
    product = new_product(client, auth)
    corrupt = picture()[:-40]
    not_an_image = client.post(
        f"/api/products/{product}/images/upload",
        files={"file": ("a.png", corrupt, "image/png")},
        headers=auth,
    )
    assert not_an_image.status_code == 422
    for _ in range(client.app.state.services.settings.max_images_per_product):  # type: ignore[attr-defined]
        assert attach(client, auth, product, f"{BASE}/legacy/a.jpg").status_code == 201
    too_many = client.post(
        f"/api/products/{product}/images/upload",
        files={"file": ("a.png", picture(), "image/png")},
        headers=auth,
    )
    assert too_many.status_code == 422  # refused after storing: the object is discarded

    assert usage(engine, tenant) == 0
    assert stored_keys(root) == set()
