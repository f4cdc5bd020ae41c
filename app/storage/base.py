"""The storage interface: where image objects live (a local folder or an S3 bucket such as R2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

MAX_KEY_LENGTH = 512
_KEY = re.compile(r"[A-Za-z0-9._/-]+")


class StorageError(Exception):
    """Base of storage failures."""


class ObjectNotFound(StorageError):
    """No object under this key."""


class StorageUnavailable(StorageError):
    """The storage cannot be written or read right now (disk full, read-only, network)."""


class InvalidKey(StorageError, ValueError):
    """A key that could escape the storage root or is not a plain relative path."""


@dataclass(frozen=True)
class StoredObject:
    """An object as stored."""

    key: str
    url: str
    size: int
    content_type: str


class Storage(Protocol):
    """What the app needs from object storage."""

    @property
    def base_url(self) -> str:
        """The public URL prefix of every object."""

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store bytes under a key, atomically."""

    def get(self, key: str) -> bytes:
        """The object's bytes, or ObjectNotFound."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under the key."""

    def delete(self, key: str) -> None:
        """Remove the object (a missing one is fine)."""

    def url_for(self, key: str) -> str:
        """The public URL of a key."""

    def key_for_url(self, url: str) -> str | None:
        """The key of one of our URLs, None for a URL outside the base."""


def check_key(key: str) -> str:
    """A relative key of `[A-Za-z0-9._/-]`, no `..`, no hidden segment, at most 512 chars."""
    if not key or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise InvalidKey(f"invalid key {key!r}: use 1-512 characters of A-Z a-z 0-9 . _ / -")
    segments = key.split("/")
    if key.startswith("/") or any(not s or s.startswith(".") for s in segments):
        raise InvalidKey(f"invalid key {key!r}: relative, no empty, '.' or '..' segments")
    return key


def url_for(base_url: str, key: str) -> str:
    """`base_url/key`."""
    return f"{base_url.rstrip('/')}/{check_key(key)}"


def key_for_url(base_url: str, url: str) -> str | None:
    """Inverse of url_for; None when the URL is not under the base or its key is invalid."""
    prefix = base_url.rstrip("/") + "/"
    if not url.startswith(prefix):
        return None
    try:
        return check_key(url.removeprefix(prefix))
    except InvalidKey:
        return None
