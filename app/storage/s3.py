"""S3-compatible storage through boto3: Cloudflare R2 in production, any S3 API otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.storage import base
from app.storage.base import (
    ListedObject,
    ObjectNotFound,
    StorageUnavailable,
    StoredObject,
    check_key,
)

_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
# Bounded waits: an unreachable endpoint becomes StorageUnavailable instead of a hung request.
_CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}
)


class S3Client(Protocol):
    """The part of a boto3 S3 client this backend calls (argument names are boto3's)."""

    def put_object(
        self,
        *,
        Bucket: str,  # noqa: N803
        Key: str,  # noqa: N803
        Body: bytes,  # noqa: N803
        ContentType: str,  # noqa: N803
    ) -> Any:
        """PutObject."""

    def get_object(self, *, Bucket: str, Key: str) -> Any:  # noqa: N803
        """GetObject."""

    def head_object(self, *, Bucket: str, Key: str) -> Any:  # noqa: N803
        """HeadObject."""

    def delete_object(self, *, Bucket: str, Key: str) -> Any:  # noqa: N803
        """DeleteObject."""

    def list_objects_v2(self, **arguments: Any) -> Any:
        """ListObjectsV2 (Bucket, Prefix, ContinuationToken)."""


class S3Storage:
    """Objects in a bucket; public URLs under `public_base_url` (an R2 public bucket or CDN)."""

    def __init__(
        self,
        bucket: str,
        public_base_url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        self.bucket = bucket
        self._base_url = public_base_url.rstrip("/")
        self._client: S3Client = client or cast(
            S3Client,
            boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=_CLIENT_CONFIG,
            ),
        )

    @property
    def base_url(self) -> str:
        """The public URL prefix (no trailing slash) every object URL starts with."""
        return self._base_url

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store the bytes with PutObject, which S3 applies all or nothing."""
        check_key(key)
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("write", key, exc) from exc
        return StoredObject(
            key=key, url=self.url_for(key), size=len(data), content_type=content_type
        )

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound when nothing is stored under the key."""
        check_key(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            return bytes(response["Body"].read())
        except ClientError as exc:
            if _is_missing(exc):
                raise ObjectNotFound(key) from None
            raise self._unavailable("read", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("read", key, exc) from exc

    def exists(self, key: str) -> bool:
        """Whether an object is stored under the key (HeadObject)."""
        check_key(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise self._unavailable("check", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("check", key, exc) from exc
        return True

    def delete(self, key: str) -> None:
        """Remove the object; S3 answers a missing key with success, and so does this."""
        check_key(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if not _is_missing(exc):
                raise self._unavailable("delete", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("delete", key, exc) from exc

    def stat(self, key: str) -> ListedObject | None:
        """The object's size and time from HeadObject, or None when it is missing."""
        check_key(key)
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise self._unavailable("check", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("check", key, exc) from exc
        return ListedObject(key, int(head["ContentLength"]), head["LastModified"])

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with `prefix`, through ListObjectsV2's pages (at
        most 1,000 keys each, followed by their continuation token)."""
        arguments: dict[str, str] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            try:
                page = self._client.list_objects_v2(**arguments)
            except (BotoCoreError, ClientError) as exc:
                raise self._unavailable("list", prefix, exc) from exc
            for item in page.get("Contents", ()):
                yield ListedObject(item["Key"], int(item["Size"]), item["LastModified"])
            if not page.get("IsTruncated"):
                return
            arguments["ContinuationToken"] = page["NextContinuationToken"]

    def url_for(self, key: str) -> str:
        """The public URL of the object under the key: `public_base_url/key`."""
        return base.url_for(self._base_url, key)

    def key_for_url(self, url: str) -> str | None:
        """The key behind one of our URLs; None for a URL outside the base."""
        return base.key_for_url(self._base_url, url)

    def _unavailable(self, action: str, key: str, exc: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"bucket {self.bucket!r} cannot {action} {key!r}: {exc}")


def _is_missing(exc: ClientError) -> bool:
    """Whether S3 answered "no such object" (GetObject says NoSuchKey, HeadObject a bare 404)."""
    # By code, not by HTTP status: a missing bucket is a 404 too, and that is a broken setup.
    return exc.response.get("Error", {}).get("Code") in _MISSING_CODES
