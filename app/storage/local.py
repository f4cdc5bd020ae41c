"""Local-folder storage served at /media: atomic writes, identical content stored once."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from app.storage import base
from app.storage.base import (
    ListedObject,
    ObjectNotFound,
    StorageUnavailable,
    StoredObject,
    check_key,
)

BLOBS_FOLDER = ".blobs"
# Objects are public (served under /media); mkstemp's 0600 would hide them from a separate
# web server reading the same folder.
_OBJECT_MODE = 0o644


class LocalStorage:
    """Objects as files under `root`; identical content shares one inode through a blob."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = Path(root)
        self._base_url = base_url.rstrip("/")
        # Key validation refuses segments starting with '.', so no key can name a blob.
        self._blobs = self.root / BLOBS_FOLDER

    @property
    def base_url(self) -> str:
        """The public URL prefix (no trailing slash) every object URL starts with."""
        return self._base_url

    def put(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store the bytes atomically: a failure leaves the previous object or none, no part."""
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self._link_to_blob(path, data):
                _write_atomically(path, data)
        except OSError as exc:
            raise _unavailable("write", key, exc) from exc
        return StoredObject(
            key=key, url=self.url_for(key), size=len(data), content_type=content_type
        )

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound when nothing is stored under the key."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise _unavailable("read", key, exc) from exc

    def exists(self, key: str) -> bool:
        """Whether an object is stored under the key."""
        path = self._path(key)
        try:
            return path.is_file()
        except OSError as exc:
            raise _unavailable("check", key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove the object, and its blob when no other key shares it; missing is fine."""
        path = self._path(key)
        try:
            blob = self._blob_only_shared_with(path)
            path.unlink(missing_ok=True)
            if blob is not None and blob.stat().st_nlink == 1:
                # A put racing this either linked before (its object keeps the inode) or
                # fails to link and falls back to a plain write: both are safe.
                blob.unlink(missing_ok=True)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise _unavailable("delete", key, exc) from exc

    def stat(self, key: str) -> ListedObject | None:
        """The object's size and time, or None when nothing is stored under the key."""
        path = self._path(key)
        try:
            return _listed(key, path.stat()) if path.is_file() else None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _unavailable("check", key, exc) from exc

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with `prefix` (blobs and temporary files are not
        objects: their names start with a dot, which no key can)."""
        folder = prefix.rpartition("/")[0]
        top = self._path(folder) if folder else self.root

        def fail(exc: OSError) -> None:
            # A prefix with nothing stored under it yet lists nothing.
            missing = isinstance(exc, FileNotFoundError | NotADirectoryError)
            if not missing or Path(exc.filename or "") != top:
                raise _unavailable("list", prefix, exc) from exc

        for directory, folders, files in os.walk(top, onerror=fail):
            folders[:] = sorted(name for name in folders if not name.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    yield _listed(key, path.stat())
                except FileNotFoundError:  # deleted while listing
                    continue
                except OSError as exc:
                    raise _unavailable("list", prefix, exc) from exc

    def url_for(self, key: str) -> str:
        """The public URL of the object under the key: `base_url/key`."""
        return base.url_for(self._base_url, key)

    def key_for_url(self, url: str) -> str | None:
        """The key behind one of our URLs; None for a URL outside the base."""
        return base.key_for_url(self._base_url, url)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _link_to_blob(self, path: Path, data: bytes) -> bool:
        """Hard-link `path` to the blob of this content; False when that cannot be done."""
        blob = self._blobs / hashlib.sha256(data).hexdigest()
        try:
            if not blob.exists():
                self._blobs.mkdir(parents=True, exist_ok=True)
                _write_atomically(blob, data)
            _link_atomically(blob, path)
        except OSError:
            # Deduplication only saves space (cross-device, link limit, no hard links on
            # this filesystem, or no room for the blob): the caller writes a plain copy.
            return False
        return True

    def _blob_only_shared_with(self, path: Path) -> Path | None:
        """The blob `path` is linked to, when `path` is the blob's only other name."""
        info = path.stat()
        if info.st_nlink != 2:
            return None
        blob = self._blobs / hashlib.sha256(path.read_bytes()).hexdigest()
        try:
            blob_info = blob.stat()
        except FileNotFoundError:
            return None
        same_inode = (blob_info.st_dev, blob_info.st_ino) == (info.st_dev, info.st_ino)
        return blob if same_inode else None


def _listed(key: str, info: os.stat_result) -> ListedObject:
    # ctime, not mtime: a put links the key to a blob that may have been written long ago
    # (same bytes uploaded before), and the link (and the rename that follows) sets ctime
    # to now. ctime is never earlier than mtime, so an object never looks older than it is.
    changed = max(info.st_mtime, info.st_ctime)
    return ListedObject(key, info.st_size, datetime.fromtimestamp(changed, UTC))


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over `path`."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        try:
            os.fchmod(descriptor, _OBJECT_MODE)
            remaining = memoryview(data)
            while remaining:
                remaining = remaining[os.write(descriptor, remaining) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _link_atomically(blob: Path, path: Path) -> None:
    """Make `path` another name of `blob`, replacing whatever `path` was, in one rename."""
    # os.link refuses an existing target; linking a fresh name then renaming replaces it.
    temporary = path.with_name(f".{path.name}.{uuid4().hex}.link")
    try:
        os.link(blob, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _unavailable(action: str, key: str, exc: OSError) -> StorageUnavailable:
    """A StorageUnavailable naming the key and the operating system's reason."""
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    detail = f"{reason} ({code})" if code else reason
    return StorageUnavailable(f"local storage cannot {action} {key!r}: {detail}")
