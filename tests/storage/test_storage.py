"""Storage backends: keys that cannot escape, atomic local writes, S3 through boto3."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st

from app.storage.base import InvalidKey, ObjectNotFound, StorageUnavailable, check_key
from app.storage.local import LocalStorage
from app.storage.s3 import S3Storage

BASE = "http://testserver/media"


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../b", ".blobs/x", "a//b", "a b", ""])
def test_keys_that_could_escape_or_hide_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


@given(
    st.lists(
        st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True), min_size=1, max_size=5
    )
)
def test_url_and_key_round_trip(segments: list[str]) -> None:
    storage = LocalStorage(Path("/nonexistent"), BASE)
    key = "/".join(segments)
    assert storage.key_for_url(storage.url_for(key)) == key
    assert storage.key_for_url("http://elsewhere/media/" + key) is None


def test_put_get_delete_and_identical_content_shares_one_inode(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media", BASE)
    first = storage.put("t1/p1/a.jpg", b"same bytes", content_type="image/jpeg")
    storage.put("t2/p9/b.jpg", b"same bytes", content_type="image/jpeg")

    assert first.url == f"{BASE}/t1/p1/a.jpg"
    assert storage.get("t1/p1/a.jpg") == b"same bytes"
    a, b = (tmp_path / "media/t1/p1/a.jpg").stat(), (tmp_path / "media/t2/p9/b.jpg").stat()
    assert a.st_ino == b.st_ino
    assert not any(p.name.startswith(".") for p in (tmp_path / "media").rglob("*")), (
        "blobs live outside the served folder"
    )
    storage.delete("t1/p1/a.jpg")
    storage.delete("t1/p1/a.jpg")  # a missing object is fine
    with pytest.raises(ObjectNotFound):
        storage.get("t1/p1/a.jpg")
    assert storage.get("t2/p9/b.jpg") == b"same bytes"


def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path / "media", BASE)

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(StorageUnavailable, match="No space left"):
        storage.put("t/p/a.jpg", b"data", content_type="image/jpeg")
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_s3_backend_speaks_the_s3_api() -> None:
    client = boto3.client(
        "s3",
        region_name="auto",
        endpoint_url="https://r2.example",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    storage = S3Storage("images", "https://cdn.example", client=client)
    with Stubber(client) as stub:
        stub.add_response(
            "put_object",
            {},
            {"Bucket": "images", "Key": "t/p/a.jpg", "Body": b"jpeg", "ContentType": "image/jpeg"},
        )
        stub.add_response(
            "get_object",
            {"Body": StreamingBody(io.BytesIO(b"jpeg"), 4)},
            {"Bucket": "images", "Key": "t/p/a.jpg"},
        )
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
        stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
        stub.add_client_error(
            "put_object", service_error_code="ServiceUnavailable", http_status_code=503
        )

        stored = storage.put("t/p/a.jpg", b"jpeg", content_type="image/jpeg")
        assert stored.url == "https://cdn.example/t/p/a.jpg"
        assert storage.get("t/p/a.jpg") == b"jpeg"
        with pytest.raises(ObjectNotFound):
            storage.get("t/p/missing.jpg")
        assert storage.exists("t/p/missing.jpg") is False
        with pytest.raises(StorageUnavailable):
            storage.put("t/p/b.jpg", b"x", content_type="image/jpeg")
