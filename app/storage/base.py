"""The storage interface: errors, the stored-object record, key rules and URL mapping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.core.errors import DomainError

MAX_KEY_LENGTH = 512
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9._/-]+")


class StorageError(Exception):
    """Base of every storage failure."""


class ObjectNotFound(StorageError):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored under {key!r}")
        self.key = key


class StorageUnavailable(StorageError, DomainError):
    """The storage cannot be read or written right now (disk full, read-only, network)."""

    status = 503
    retry_after = 5
    log_event = "storage.unavailable"

    @property
    def detail(self) -> str:
        return f"image storage unavailable: {self}"


class InvalidKey(StorageError, ValueError):
    """A key that is not a plain relative path of safe characters."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(
            f"invalid storage key {key[:80]!r}: {problem}; keys are 1-{MAX_KEY_LENGTH} characters"
            " of A-Z a-z 0-9 . _ / - forming a relative path whose segments are non-empty"
            " and do not start with '.'"
        )
        self.key = key


@dataclass(frozen=True)
class StoredObject:
    """An object as stored: where it lives and what it holds."""

    key: str
    url: str
    size: int
    content_type: str


@dataclass(frozen=True)
class ListedObject:
    """An object found by a listing: its key, its size in bytes and when it was last written
    (never earlier than the moment its key was created: the sweep's grace period counts
    from there)."""

    key: str
    size: int
    modified: datetime


class Storage(Protocol):
    """What the app needs from object storage: a local folder or an S3 bucket such as R2."""

    @property
    def base_url(self) -> str:
        """The public URL prefix (no trailing slash) every object URL starts with."""
        ...

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store the bytes under the key, replacing any object there, all or nothing."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound when nothing is stored under the key."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under the key."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is fine."""
        ...

    def stat(self, key: str) -> ListedObject | None:
        """The object's size and time, or None when nothing is stored under the key."""
        ...

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with `prefix`, page by page (never all in memory)."""
        ...

    def url_for(self, key: str) -> str:
        """The public URL of the object under the key."""
        ...

    def key_for_url(self, url: str) -> str | None:
        """The key behind one of our URLs; None for a URL outside the base."""
        ...


def check_key(key: str) -> str:
    """Return the key unchanged if it is valid, else raise InvalidKey saying why."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(key, f"length {len(key)} is outside 1-{MAX_KEY_LENGTH}")
    if not _KEY_CHARACTERS.fullmatch(key):
        raise InvalidKey(key, "it contains a character outside A-Z a-z 0-9 . _ / -")
    if key.startswith("/"):
        raise InvalidKey(key, "it is absolute")
    for segment in key.split("/"):
        if not segment:
            raise InvalidKey(key, "it has an empty segment")
        # Covers '.' and '..' as well as hidden names such as the local '.blobs' folder.
        if segment.startswith("."):
            raise InvalidKey(key, f"segment {segment!r} starts with '.'")
    return key


def url_for(base_url: str, key: str) -> str:
    """The URL of a key under a base URL: `base/key`."""
    return f"{base_url.rstrip('/')}/{check_key(key)}"


def key_for_url(base_url: str, url: str) -> str | None:
    """The key of a URL under the base URL; None when outside the base or not a valid key."""
    prefix = f"{base_url.rstrip('/')}/"
    if not url.startswith(prefix):
        return None
    try:
        return check_key(url.removeprefix(prefix))
    except InvalidKey:
        return None
