"""S3Storage against botocore's Stubber: the S3 calls made and how their failures map."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from app.storage.base import InvalidKey, ObjectNotFound, StorageUnavailable
from app.storage.s3 import S3Storage

BUCKET = "images"
CDN = "https://cdn.example"
ENDPOINT = "https://account.r2.cloudflarestorage.com"


def r2_client() -> Any:
    """A real boto3 client that never reaches the network: every call is stubbed or refused."""
    return boto3.client(
        "s3",
        region_name="auto",
        endpoint_url=ENDPOINT,
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def client() -> Any:
    return r2_client()


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def storage(client: Any) -> S3Storage:
    return S3Storage(BUCKET, CDN + "/", client=client)


def object_params(key: str) -> dict[str, str]:
    return {"Bucket": BUCKET, "Key": key}


def test_put_sends_the_bytes_and_content_type(storage: S3Storage, stub: Stubber) -> None:
    stub.add_response(
        "put_object",
        {"ETag": '"abc"'},
        {**object_params("t/p/a.jpg"), "Body": b"jpeg", "ContentType": "image/jpeg"},
    )
    stored = storage.put("t/p/a.jpg", b"jpeg", content_type="image/jpeg")
    assert (stored.key, stored.url, stored.size, stored.content_type) == (
        "t/p/a.jpg",
        f"{CDN}/t/p/a.jpg",
        4,
        "image/jpeg",
    )


def test_get_returns_the_body(storage: S3Storage, stub: Stubber) -> None:
    stub.add_response(
        "get_object", {"Body": StreamingBody(io.BytesIO(b"jpeg"), 4)}, object_params("a.jpg")
    )
    assert storage.get("a.jpg") == b"jpeg"


def test_a_missing_object_is_object_not_found(storage: S3Storage, stub: Stubber) -> None:
    stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    with pytest.raises(ObjectNotFound):
        storage.get("missing.jpg")


def test_exists_asks_head_object(storage: S3Storage, stub: Stubber) -> None:
    stub.add_response("head_object", {"ContentLength": 4}, object_params("a.jpg"))
    stub.add_client_error("head_object", service_error_code="404", http_status_code=404)
    assert storage.exists("a.jpg") is True
    assert storage.exists("missing.jpg") is False


def test_delete_is_fine_with_a_missing_object(storage: S3Storage, stub: Stubber) -> None:
    stub.add_response("delete_object", {}, object_params("a.jpg"))
    stub.add_client_error("delete_object", service_error_code="NoSuchKey", http_status_code=404)
    storage.delete("a.jpg")
    storage.delete("a.jpg")


@pytest.mark.parametrize(
    ("code", "status"),
    [("ServiceUnavailable", 503), ("AccessDenied", 403), ("NoSuchBucket", 404)],
)
def test_service_errors_are_storage_unavailable(
    storage: S3Storage, stub: Stubber, code: str, status: int
) -> None:
    for operation in ("put_object", "get_object", "head_object", "delete_object"):
        stub.add_client_error(operation, service_error_code=code, http_status_code=status)
    with pytest.raises(StorageUnavailable, match=code):
        storage.put("a.jpg", b"x", content_type="image/jpeg")
    with pytest.raises(StorageUnavailable, match=code):
        storage.get("a.jpg")
    with pytest.raises(StorageUnavailable, match=code):
        storage.exists("a.jpg")
    with pytest.raises(StorageUnavailable, match=code):
        storage.delete("a.jpg")


def test_an_unreachable_endpoint_is_storage_unavailable(client: Any) -> None:
    def unreachable(**_: object) -> None:
        raise EndpointConnectionError(endpoint_url=ENDPOINT)

    # Fails where the request would be sent, so nothing leaves the process.
    client.meta.events.register("before-send.s3", unreachable)
    storage = S3Storage(BUCKET, CDN, client=client)
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        storage.put("a.jpg", b"x", content_type="image/jpeg")
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        storage.get("a.jpg")
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        storage.exists("a.jpg")
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        storage.delete("a.jpg")


@pytest.mark.parametrize("key", ["../x", "/abs", ".blobs/x"])
def test_invalid_keys_are_refused_before_any_call(
    storage: S3Storage, stub: Stubber, key: str
) -> None:
    with pytest.raises(InvalidKey):
        storage.put(key, b"x", content_type="image/jpeg")
    with pytest.raises(InvalidKey):
        storage.get(key)
    with pytest.raises(InvalidKey):
        storage.exists(key)
    with pytest.raises(InvalidKey):
        storage.delete(key)


def test_urls_map_to_keys_under_the_public_base(storage: S3Storage) -> None:
    assert storage.base_url == CDN
    assert storage.url_for("t/p/a.webp") == f"{CDN}/t/p/a.webp"
    assert storage.key_for_url(f"{CDN}/t/p/a.webp") == "t/p/a.webp"
    assert storage.key_for_url(f"{ENDPOINT}/{BUCKET}/t/p/a.webp") is None


def test_builds_its_own_client_from_plain_settings() -> None:
    storage = S3Storage(
        BUCKET,
        CDN,
        endpoint_url=ENDPOINT,
        region="auto",
        access_key_id="key",
        secret_access_key="secret",
    )
    assert storage.bucket == BUCKET
    assert storage.url_for("a.png") == f"{CDN}/a.png"
