"""S3-compatible storage (Cloudflare R2 in production) through boto3."""

from __future__ import annotations

from typing import Any

from app.storage import base
from app.storage.base import ObjectNotFound, StorageUnavailable, StoredObject, check_key


class S3Storage:
    """Objects in a bucket; public URLs under `public_base_url` (R2 public bucket or CDN)."""

    def __init__(
        self,
        bucket: str,
        public_base_url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        import boto3

        self.bucket = bucket
        self._base_url = public_base_url.rstrip("/")
        self._client = client or boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )

    @property
    def base_url(self) -> str:
        """The public URL prefix of every object."""
        return self._base_url

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """PutObject (atomic on S3)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc}") from exc
        return StoredObject(
            key=key, url=self.url_for(key), size=len(data), content_type=content_type
        )

    def get(self, key: str) -> bytes:
        """GetObject."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=check_key(key))
            return bytes(response["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectNotFound(key) from None
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        """HeadObject."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise StorageUnavailable(f"cannot check {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"cannot check {key}: {exc}") from exc
        return True

    def delete(self, key: str) -> None:
        """DeleteObject (idempotent on S3)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"cannot delete {key}: {exc}") from exc

    def url_for(self, key: str) -> str:
        """`public_base_url/key`."""
        return base.url_for(self._base_url, key)

    def key_for_url(self, url: str) -> str | None:
        """The key of one of our URLs."""
        return base.key_for_url(self._base_url, url)
