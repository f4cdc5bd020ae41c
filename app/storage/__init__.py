"""Object storage behind one interface: a local folder (default) or an S3 bucket such as R2."""

from app.storage.base import (
    InvalidKey,
    ListedObject,
    ObjectNotFound,
    Storage,
    StorageError,
    StorageUnavailable,
    StoredObject,
    check_key,
)

__all__ = [
    "InvalidKey",
    "ListedObject",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "check_key",
]
