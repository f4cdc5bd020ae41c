"""The images API over HTTP: every endpoint dual-writes, bad input changes nothing."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PillowImage
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from tests.conftest import bearer
from tests.images_db import (
    assert_representations_equal,
    insert_legacy_product,
    jsonb_elements,
    table_elements,
)

BASE = "http://testserver/media"
LEGACY = [
    {"url": f"{BASE}/t/p/photo-b.jpg", "order": 1, "created_at": "2024-05-02T10:00:00Z"},
    {"url": f"{BASE}/t/p/photo-a.jpg", "order": 0, "created_at": "2024-05-02T10:00:00Z"},
    {"url": f"{BASE}/t/p/label.jpg", "order": 2},
]


def picture(kind: str = "JPEG", size: tuple[int, int] = (640, 480)) -> bytes:
    buffer = io.BytesIO()
    PillowImage.new("RGB", size, (200, 30, 30)).save(buffer, format=kind)
    return buffer.getvalue()


def images_path(product_id: int) -> str:
    return f"/api/products/{product_id}/images"


@pytest.fixture
def legacy_product(engine: Engine, tenant: int) -> int:
    return insert_legacy_product(engine, tenant, LEGACY)


def test_legacy_product_is_served_from_jsonb_in_order_with_stable_ids(
    client: TestClient, auth: dict[str, str], legacy_product: int
) -> None:
    first = client.get(images_path(legacy_product), headers=auth)
    second = client.get(images_path(legacy_product), headers=auth)

    assert first.status_code == 200
    assert first.headers["x-images-read-path"] == "jsonb"
    urls = [image["url"] for image in first.json()["images"]]
    assert urls == [LEGACY[1]["url"], LEGACY[0]["url"], LEGACY[2]["url"]]
    assert [image["order"] for image in first.json()["images"]] == [0, 1, 2]
    assert first.json() == second.json(), "ids are derived, not random"
    # The bug being fixed: the JSONB does not know the label, so it is served as a photo.
    assert not any(image["is_label"] for image in first.json()["images"])


def test_first_write_migrates_the_product_with_the_label_rule_into_both_representations(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    before = client.get(images_path(legacy_product), headers=auth).json()["images"]

    added = client.post(
        images_path(legacy_product), json={"url": f"{BASE}/t/p/new.jpg"}, headers=auth
    )

    assert added.status_code == 201, added.text
    assert added.json()["order"] == 3
    assert_representations_equal(engine, tenant, legacy_product)
    rows = table_elements(engine, tenant, legacy_product)
    assert [row["id"] for row in rows[:3]] == [image["id"] for image in before]
    assert [row["is_label"] for row in rows] == [False, False, True, False]
    label = client.get(f"{images_path(legacy_product)}/label", headers=auth).json()
    assert label["url"] == LEGACY[2]["url"]
    photos = client.get(f"{images_path(legacy_product)}/photos", headers=auth).json()["images"]
    assert LEGACY[2]["url"] not in [photo["url"] for photo in photos]


def test_add_at_a_position_then_delete_renumbers(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    added = client.post(
        images_path(legacy_product),
        json={"url": f"{BASE}/x/front.jpg", "position": 0, "tags": ["front"], "alt_text": "Front"},
        headers=auth,
    ).json()
    assert added["order"] == 0
    assert added["tags"] == ["front"]

    deleted = client.delete(f"{images_path(legacy_product)}/{added['id']}", headers=auth)

    assert deleted.status_code == 204
    listed = client.get(images_path(legacy_product), headers=auth).json()["images"]
    assert [image["order"] for image in listed] == [0, 1, 2]
    assert added["id"] not in [image["id"] for image in listed]
    assert_representations_equal(engine, tenant, legacy_product)


def test_set_label_clears_the_previous_one_and_patch_changes_alt_text_and_tags(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    images = client.get(images_path(legacy_product), headers=auth).json()["images"]
    first = images[0]["id"]

    patched = client.patch(
        f"{images_path(legacy_product)}/{first}",
        json={"is_label": True, "alt_text": "Price tag", "tags": ["tag", "detail"]},
        headers=auth,
    )

    assert patched.status_code == 200, patched.text
    assert patched.json()["is_label"] is True
    assert patched.json()["alt_text"] == "Price tag"
    rows = table_elements(engine, tenant, legacy_product)
    assert [row["is_label"] for row in rows] == [True, False, False]
    assert_representations_equal(engine, tenant, legacy_product)

    cleared = client.patch(
        f"{images_path(legacy_product)}/{first}", json={"is_label": False}, headers=auth
    )
    assert cleared.json()["is_label"] is False
    assert cleared.json()["alt_text"] == "Price tag", "fields not given are left alone"
    assert client.get(f"{images_path(legacy_product)}/label", headers=auth).status_code == 404


def test_reorder_by_a_permutation(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    ids = [
        image["id"]
        for image in client.get(images_path(legacy_product), headers=auth).json()["images"]
    ]
    new_order = [ids[2], ids[0], ids[1]]

    response = client.put(
        f"{images_path(legacy_product)}/order", json={"image_ids": new_order}, headers=auth
    )

    assert response.status_code == 200, response.text
    assert [image["id"] for image in response.json()["images"]] == new_order
    assert [row["id"] for row in table_elements(engine, tenant, legacy_product)] == new_order
    assert_representations_equal(engine, tenant, legacy_product)


def test_upload_stores_the_file_and_records_its_real_metadata(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    response = client.post(
        f"{images_path(legacy_product)}/upload",
        files={"file": ("shoe.png", picture("PNG", (800, 600)), "image/png")},
        data={"alt_text": "A shoe", "tags": ["side"]},
        headers=auth,
    )

    assert response.status_code == 201, response.text
    image = response.json()
    assert (image["mime_type"], image["width"], image["height"]) == ("image/png", 800, 600)
    assert image["file_size"] > 0
    assert image["url"].startswith(f"{BASE}/t{tenant}/p{legacy_product}/")
    served = client.get(image["url"].removeprefix("http://testserver"))
    assert served.status_code == 200
    assert len(served.content) == image["file_size"]
    assert_representations_equal(engine, tenant, legacy_product)


def _unchanged(engine: Engine, tenant: int, product_id: int) -> Callable[[], None]:
    before = jsonb_elements(engine, tenant, product_id), table_elements(engine, tenant, product_id)

    def check() -> None:
        after = (
            jsonb_elements(engine, tenant, product_id),
            table_elements(engine, tenant, product_id),
        )
        assert after == before, "a refused request changed nothing"

    return check


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://testserver/media/a.jpg"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "http://evil.example/media/a.jpg"}, "url"),
        ({"url": f"{BASE}/../secret.jpg"}, "url"),
        ({"url": "http://testserver/other/a.jpg"}, "url"),
        ({"url": f"{BASE}/a.jpg", "alt_text": "a" * 501}, "alt_text"),
        ({"url": f"{BASE}/a.jpg", "alt_text": "nul \x00 here"}, "alt_text"),
        ({"url": f"{BASE}/a\x00.jpg"}, "url"),
        ({"url": f"{BASE}/a b.jpg"}, "url"),
        ({"url": f"{BASE}/a.jpg", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"url": f"{BASE}/a.jpg", "tags": ["Not A Slug"]}, "tags"),
        ({"url": f"{BASE}/a.jpg", "position": 99}, "position"),
        ({"url": f"{BASE}/a.jpg", "position": -1}, "position"),
        ({"url": f"{BASE}/a.jpg", "colour": "red"}, "colour"),
        ({"url": f"{BASE}/a.jpg", "is_label": "maybe"}, "is_label"),
    ],
)
def test_bad_add_is_a_422_naming_the_field_and_writes_nothing(
    client: TestClient,
    auth: dict[str, str],
    engine: Engine,
    tenant: int,
    legacy_product: int,
    body: dict[str, Any],
    field: str,
) -> None:
    unchanged = _unchanged(engine, tenant, legacy_product)
    response = client.post(images_path(legacy_product), json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}
    unchanged()


def test_reorder_that_is_not_a_permutation_is_refused(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    ids = [
        image["id"]
        for image in client.get(images_path(legacy_product), headers=auth).json()["images"]
    ]
    unchanged = _unchanged(engine, tenant, legacy_product)
    for image_ids in (
        ids[:2],
        [*ids, ids[0]],
        [ids[0], ids[1], "00000000-0000-4000-8000-000000000000"],
    ):
        response = client.put(
            f"{images_path(legacy_product)}/order", json={"image_ids": image_ids}, headers=auth
        )
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"][-1] == "image_ids"
    unchanged()


def test_unknown_or_foreign_image_ids_are_404(
    client: TestClient, auth: dict[str, str], engine: Engine, tenant: int, legacy_product: int
) -> None:
    other_product = insert_legacy_product(engine, tenant, LEGACY)
    foreign = client.get(images_path(other_product), headers=auth).json()["images"][0]["id"]
    unchanged = _unchanged(engine, tenant, legacy_product)
    for image_id in (foreign, "00000000-0000-4000-8000-000000000000"):
        path = f"{images_path(legacy_product)}/{image_id}"
        assert client.delete(path, headers=auth).status_code == 404
        assert client.patch(path, json={"alt_text": "x"}, headers=auth).status_code == 404
    assert (
        client.delete(f"{images_path(legacy_product)}/not-a-uuid", headers=auth).status_code == 422
    )
    unchanged()


def test_more_than_the_configured_images_is_refused(
    settings: Settings, engine: Engine, tenant: int, legacy_product: int
) -> None:
    small = settings.model_copy(update={"max_images_per_product": 3})
    with TestClient(create_app(small, engine)) as client:
        unchanged = _unchanged(engine, tenant, legacy_product)
        response = client.post(
            images_path(legacy_product), json={"url": f"{BASE}/a.jpg"}, headers=bearer(tenant)
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "images"
    unchanged()


@pytest.mark.parametrize(
    ("name", "data", "content_type", "status", "reason"),
    [
        ("notes.txt", b"hello, not an image", "text/plain", 422, "not_an_image"),
        ("photo.jpg", picture("PNG"), "image/jpeg", 422, "type_mismatch"),
        ("photo.gif", picture("GIF"), "image/gif", 422, "unsupported_type"),
        ("photo.jpg", picture("JPEG")[:200], "image/jpeg", 422, None),
        ("empty.jpg", b"", "image/jpeg", 422, "empty"),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(
    client: TestClient,
    auth: dict[str, str],
    engine: Engine,
    tenant: int,
    legacy_product: int,
    settings: Settings,
    name: str,
    data: bytes,
    content_type: str,
    status: int,
    reason: str | None,
) -> None:
    unchanged = _unchanged(engine, tenant, legacy_product)
    response = client.post(
        f"{images_path(legacy_product)}/upload",
        files={"file": (name, data, content_type)},
        headers=auth,
    )
    assert response.status_code == status, response.text
    error = response.json()["detail"][0]
    assert error["loc"][-1] == "file"
    if reason:
        assert error["type"] == reason
    unchanged()
    stored = [p for p in settings.resolved_media_root.rglob("*") if p.is_file()]
    assert not [p for p in stored if ".blobs" not in p.parts]


def test_oversized_upload_and_decompression_bomb_are_refused(
    settings: Settings, engine: Engine, tenant: int, legacy_product: int
) -> None:
    tight = settings.model_copy(update={"max_upload_bytes": 20_000, "max_upload_pixels": 1_000_000})
    noise = io.BytesIO()  # random pixels do not compress: well over 20 kB
    PillowImage.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3)).save(noise, format="JPEG")
    bomb = io.BytesIO()
    PillowImage.new("1", (4000, 4000)).save(bomb, format="PNG")
    with TestClient(create_app(tight, engine)) as client:
        unchanged = _unchanged(engine, tenant, legacy_product)
        big = client.post(
            f"{images_path(legacy_product)}/upload",
            files={"file": ("big.jpg", noise.getvalue(), "image/jpeg")},
            headers=bearer(tenant),
        )
        assert big.status_code == 413
        exploding = client.post(
            f"{images_path(legacy_product)}/upload",
            files={"file": ("bomb.png", bomb.getvalue(), "image/png")},
            headers=bearer(tenant),
        )
        assert exploding.status_code == 422
        assert exploding.json()["detail"][0]["type"] == "decompression_bomb"
        unchanged()


def test_another_tenant_cannot_read_or_change_images(
    client: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    owner, intruder = make_tenant(), make_tenant()
    product = insert_legacy_product(engine, owner, LEGACY)
    image_id = client.get(images_path(product), headers=bearer(owner)).json()["images"][0]["id"]
    unchanged = _unchanged(engine, owner, product)
    other = bearer(intruder)
    assert client.get(images_path(product), headers=other).status_code == 404
    assert client.get(f"{images_path(product)}/photos", headers=other).status_code == 404
    assert client.get(f"{images_path(product)}/label", headers=other).status_code == 404
    assert (
        client.post(images_path(product), json={"url": f"{BASE}/a.jpg"}, headers=other).status_code
        == 404
    )
    assert (
        client.patch(
            f"{images_path(product)}/{image_id}", json={"alt_text": "x"}, headers=other
        ).status_code
        == 404
    )
    assert client.delete(f"{images_path(product)}/{image_id}", headers=other).status_code == 404
    assert (
        client.put(
            f"{images_path(product)}/order", json={"image_ids": [image_id]}, headers=other
        ).status_code
        == 404
    )
    upload = client.post(
        f"{images_path(product)}/upload",
        files={"file": ("a.png", picture("PNG"), "image/png")},
        headers=other,
    )
    assert upload.status_code == 404
    unchanged()


def test_media_serves_objects_but_never_the_storage_internals(
    client: TestClient, auth: dict[str, str], legacy_product: int, settings: Settings
) -> None:
    uploaded = client.post(
        f"{images_path(legacy_product)}/upload",
        files={"file": ("a.png", picture("PNG"), "image/png")},
        headers=auth,
    ).json()
    assert client.get(uploaded["url"].removeprefix("http://testserver")).status_code == 200
    blobs = [
        p
        for p in settings.resolved_media_root.rglob("*")
        if p.is_file()
        and any(part.startswith(".") for part in p.relative_to(settings.resolved_media_root).parts)
    ]
    assert blobs, "the local storage keeps deduplicated blobs under a dot folder"
    hidden = "/".join(blobs[0].relative_to(settings.resolved_media_root).parts)
    assert client.get(f"/media/{hidden}").status_code == 404
