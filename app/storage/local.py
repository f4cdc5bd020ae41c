"""Local-folder storage, served by the app at /media; atomic writes, content deduplicated."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from app.storage import base
from app.storage.base import ObjectNotFound, StorageUnavailable, StoredObject, check_key


class LocalStorage:
    """Objects as files under `root`; identical content shares one inode (hard links)."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = Path(root)
        self._base_url = base_url.rstrip("/")
        # Blobs live beside the served folder, never under it: nothing but keys is servable.
        self._blobs = self.root.parent / f".{self.root.name}-blobs"

    @property
    def base_url(self) -> str:
        """The public URL prefix of every object."""
        return self._base_url

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Write atomically (temp file, fsync, rename); a failure leaves no partial object."""
        path = self._path(key)
        digest = hashlib.sha256(data).hexdigest()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            blob = self._blob(digest, data)
            if blob is None or not self._link(blob, path):
                self._atomic_write(path, data)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key}: {exc.strerror or exc}") from exc
        return StoredObject(
            key=key, url=self.url_for(key), size=len(data), content_type=content_type
        )

    def _blob(self, digest: str, data: bytes) -> Path | None:
        blob = self._blobs / digest[:2] / digest
        if blob.exists():
            return blob
        try:
            blob.parent.mkdir(parents=True, exist_ok=True)
            self._atomic_write(blob, data)
        except OSError:
            return None  # deduplication is an optimisation; the plain write still happens
        return blob

    @staticmethod
    def _link(blob: Path, path: Path) -> bool:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.link")
        try:
            os.link(blob, temporary)
            os.replace(temporary, path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            return False
        return True

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def get(self, key: str) -> bytes:
        """The object's bytes."""
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {key}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file if present."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def url_for(self, key: str) -> str:
        """`base_url/key`."""
        return base.url_for(self._base_url, key)

    def key_for_url(self, url: str) -> str | None:
        """The key of one of our URLs."""
        return base.key_for_url(self._base_url, url)
