"""Choose the storage backend from settings."""

from __future__ import annotations

from app.core.settings import Settings
from app.storage.base import Storage
from app.storage.local import LocalStorage
from app.storage.s3 import S3Storage


def build_storage(settings: Settings) -> Storage:
    """The local folder served at /media (default) or an S3-compatible bucket (R2)."""
    if settings.storage_backend == "s3":
        assert settings.s3_bucket is not None  # enforced by Settings
        return S3Storage(
            settings.s3_bucket,
            settings.media_base_url,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return LocalStorage(settings.resolved_media_root, settings.media_base_url)
