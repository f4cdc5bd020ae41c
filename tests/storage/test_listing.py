"""Listing and stat of stored objects, both backends: what the sweep counts and removes."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from app.storage.base import ListedObject, StorageUnavailable
from app.storage.local import BLOBS_FOLDER, LocalStorage
from app.storage.s3 import S3Storage
from tests.storage.test_s3 import BUCKET, CDN, r2_client

BASE = "http://testserver/media"


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media", BASE)


def keys(listed: list[ListedObject]) -> list[str]:
    return sorted(found.key for found in listed)


def test_local_lists_every_object_under_a_prefix_with_its_size(local: LocalStorage) -> None:
    local.put("t1/p1/a.jpg", b"aaaa", content_type="image/jpeg")
    local.put("t1/p2/b.png", b"bb", content_type="image/png")
    local.put("t12/p1/c.jpg", b"c", content_type="image/jpeg")
    local.put("seed42/t1/p1/0.jpg", b"legacy", content_type="image/jpeg")

    listed = list(local.list_objects("t1/"))

    assert keys(listed) == ["t1/p1/a.jpg", "t1/p2/b.png"]
    assert {found.key: found.size for found in listed} == {"t1/p1/a.jpg": 4, "t1/p2/b.png": 2}
    assert keys(list(local.list_objects("t1"))) == [
        "t1/p1/a.jpg",
        "t1/p2/b.png",
        "t12/p1/c.jpg",
    ], "a prefix is a string prefix, as in S3"


def test_local_listing_skips_blobs_and_temporary_files(local: LocalStorage) -> None:
    local.put("t1/p1/a.jpg", b"same bytes", content_type="image/jpeg")
    local.put("t1/p1/b.jpg", b"same bytes", content_type="image/jpeg")  # one blob, two keys
    (local.root / "t1/p1/.a.jpg.123.tmp").write_bytes(b"half written")

    assert (local.root / BLOBS_FOLDER).is_dir()
    assert keys(list(local.list_objects(""))) == ["t1/p1/a.jpg", "t1/p1/b.jpg"]


def test_local_listing_of_a_prefix_with_nothing_stored_is_empty(local: LocalStorage) -> None:
    assert list(local.list_objects("t9/")) == []
    local.put("t1/a.jpg", b"x", content_type="image/jpeg")
    assert list(local.list_objects("t1/a.jpg/")) == []


def test_a_local_object_is_as_young_as_its_key_even_when_its_blob_is_old(
    local: LocalStorage,
) -> None:
    local.put("t1/p1/old.jpg", b"same bytes", content_type="image/jpeg")
    blob = next((local.root / BLOBS_FOLDER).iterdir())
    long_ago = time.time() - 86_400
    os.utime(blob, (long_ago, long_ago))  # the blob (and its links) say "written a day ago"
    before = datetime.now(UTC).replace(microsecond=0)

    local.put("t1/p1/new.jpg", b"same bytes", content_type="image/jpeg")

    found = local.stat("t1/p1/new.jpg")
    assert found is not None
    assert found.modified >= before, "an upload of known bytes must not look old to the sweep"


def test_local_stat_gives_size_and_time_or_none(local: LocalStorage) -> None:
    local.put("t1/p1/a.jpg", b"abc", content_type="image/jpeg")
    found = local.stat("t1/p1/a.jpg")
    assert found is not None
    assert (found.key, found.size) == ("t1/p1/a.jpg", 3)
    assert local.stat("t1/p1/missing.jpg") is None
    assert local.stat("t1/p1") is None  # a folder is not an object


def test_local_listing_that_cannot_read_a_folder_is_storage_unavailable(
    local: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    local.put("t1/p1/a.jpg", b"abc", content_type="image/jpeg")
    unreadable = local.root / "t1/p1"
    scandir = os.scandir

    def refuse(path: Any) -> Any:
        if Path(path) == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    # Never a silently shorter listing: the sweep would undercount the tenant's usage.
    with pytest.raises(StorageUnavailable, match="list"):
        list(local.list_objects("t1/"))


@pytest.fixture
def client() -> Any:
    return r2_client()


@pytest.fixture
def s3(client: Any) -> S3Storage:
    return S3Storage(BUCKET, CDN, client=client)


def test_s3_lists_every_page_following_the_continuation_token(s3: S3Storage, client: Any) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    with Stubber(client) as stub:
        stub.add_response(
            "list_objects_v2",
            {
                "Contents": [{"Key": "t1/p1/a.jpg", "Size": 4, "LastModified": at}],
                "IsTruncated": True,
                "NextContinuationToken": "page-2",
            },
            {"Bucket": BUCKET, "Prefix": "t1/"},
        )
        stub.add_response(
            "list_objects_v2",
            {
                "Contents": [{"Key": "t1/p2/b.jpg", "Size": 7, "LastModified": at}],
                "IsTruncated": False,
            },
            {"Bucket": BUCKET, "Prefix": "t1/", "ContinuationToken": "page-2"},
        )
        listed = list(s3.list_objects("t1/"))
        stub.assert_no_pending_responses()
    assert listed == [
        ListedObject("t1/p1/a.jpg", 4, at),
        ListedObject("t1/p2/b.jpg", 7, at),
    ]


def test_s3_listing_of_an_empty_prefix_is_empty(s3: S3Storage, client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_response("list_objects_v2", {"IsTruncated": False, "KeyCount": 0})
        assert list(s3.list_objects("t9/")) == []


def test_s3_listing_failure_is_storage_unavailable(s3: S3Storage, client: Any) -> None:
    with Stubber(client) as stub:
        stub.add_client_error("list_objects_v2", service_error_code="AccessDenied")
        with pytest.raises(StorageUnavailable, match="AccessDenied"):
            list(s3.list_objects("t1/"))


def test_s3_stat_reads_head_object(s3: S3Storage, client: Any) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    with Stubber(client) as stub:
        stub.add_response(
            "head_object",
            {"ContentLength": 9, "LastModified": at},
            {"Bucket": BUCKET, "Key": "t1/a.jpg"},
        )
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error("head_object", service_error_code="AccessDenied")
        assert s3.stat("t1/a.jpg") == ListedObject("t1/a.jpg", 9, at)
        assert s3.stat("t1/missing.jpg") is None
        with pytest.raises(StorageUnavailable):
            s3.stat("t1/a.jpg")
