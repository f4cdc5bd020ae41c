"""Drill: uploads onto a really full disk and a really read-only filesystem.

Root ignores file modes (the chmod test in tests/storage is skipped as root), so the media
folder here is a real tmpfs mount: 64 KiB (ENOSPC mid-write) or remounted read-only (EROFS).
The upload answers 503 with Retry-After (StorageUnavailable), leaves no file and no image
record in either representation, and the same upload succeeds once space is back.
Skipped where tmpfs cannot be mounted (not root, no CAP_SYS_ADMIN)."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
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
LEGACY = [{"url": f"{BASE}/p/{k}.jpg", "order": k} for k in range(3)]
TMPFS_BYTES = 64 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "media"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


def noise_jpeg(side: int) -> bytes:
    buffer = io.BytesIO()
    pixels = os.urandom(side * side * 3)  # random pixels do not compress
    PillowImage.frombytes("RGB", (side, side), pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def snapshot(engine: Engine, tenant: int, product: int) -> Callable[[], None]:
    before = jsonb_elements(engine, tenant, product), table_elements(engine, tenant, product)

    def unchanged() -> None:
        after = jsonb_elements(engine, tenant, product), table_elements(engine, tenant, product)
        assert after == before, "no half-written image record in either representation"

    return unchanged


def upload(
    client: TestClient, tenant: int, product: int, data: bytes
) -> tuple[int, dict[str, Any]]:
    response = client.post(
        f"/api/products/{product}/images/upload",
        files={"file": ("photo.jpg", data, "image/jpeg")},
        headers=bearer(tenant),
    )
    return response.status_code, {"json": response.json(), "headers": dict(response.headers)}


def test_an_upload_onto_a_full_disk_is_a_503_and_writes_nothing(
    small_disk: Path, settings: Settings, engine: Engine, tenant: int
) -> None:
    product = insert_legacy_product(engine, tenant, LEGACY)
    unchanged = snapshot(engine, tenant, product)
    too_big = noise_jpeg(400)
    assert len(too_big) > TMPFS_BYTES, "larger than the whole disk: fails mid-write"
    free_before = os.statvfs(small_disk).f_bfree

    with TestClient(
        create_app(settings.model_copy(update={"media_root": small_disk}), engine)
    ) as c:
        status, response = upload(c, tenant, product, too_big)
        assert status == 503, response
        assert response["headers"]["retry-after"]
        assert "No space left on device" in response["json"]["detail"]
        unchanged()
        assert files_under(small_disk) == [], "no temporary file, no partial object"
        assert os.statvfs(small_disk).f_bfree == free_before, "every byte given back"

        status, response = upload(c, tenant, product, noise_jpeg(40))
        assert status == 201, response
    assert_representations_equal(engine, tenant, product)
    assert [e["url"] for e in table_elements(engine, tenant, product)][-1] == response["json"][
        "url"
    ]


def test_an_upload_onto_a_read_only_filesystem_is_a_503_and_writes_nothing(
    small_disk: Path, settings: Settings, engine: Engine, tenant: int
) -> None:
    product = insert_legacy_product(engine, tenant, LEGACY)
    app = create_app(settings.model_copy(update={"media_root": small_disk}), engine)
    with TestClient(app) as client:
        status, first = upload(client, tenant, product, noise_jpeg(40))
        assert status == 201, first
        unchanged = snapshot(engine, tenant, product)
        stored = files_under(small_disk)
        remount(small_disk, "ro")
        try:
            status, response = upload(client, tenant, product, noise_jpeg(41))
            assert status == 503, response
            assert "Read-only file system" in response["json"]["detail"]
            unchanged()
            assert files_under(small_disk) == stored
            served = client.get(first["json"]["url"].removeprefix("http://testserver"))
            assert served.status_code == 200, "what is stored is still served"
        finally:
            remount(small_disk, "rw")
        status, response = upload(client, tenant, product, noise_jpeg(41))
        assert status == 201, response
    assert_representations_equal(engine, tenant, product)
    assert len(table_elements(engine, tenant, product)) == len(LEGACY) + 2
